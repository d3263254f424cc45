"""The consortium-sized database the benchmarks run against, built once and cached.

A million patrons and five million events take minutes to build, so the database
is kept under bench/data/ (git-ignored) and every run works on a copy of it: a
benchmark that writes (taps, syncs) must not change what the next run starts from.

The patrons are the central service's card keys for card numbers 20000000 onwards,
so a benchmark can tap a real number and the device finds its entry. Raw events lie
inside the default 90-day retention, as on a device whose hourly purge keeps up;
the hourly counts go back three years, as they do after raw events were purged.
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from device.cards import card_key
from device.schedule import Period
from device.store import Store

KEY = b"omaovi-bench-consortium-key-0001"
FIRST_CARD = 20_000_000
DOORS = ("main", "side")
#: Each door's lock relay pin (BCM).
LOCK_PINS = dict(zip(DOORS, (17, 5)))
#: Raw events are spread over this many days before the build, inside the 90-day retention.
EVENT_DAYS = 85
#: Every this many patrons one is blocked; the rest may come in.
BLOCKED_EVERY = 20
_CHUNK = 50_000


def card_number(i: int) -> str:
    return str(FIRST_CARD + i)


def allowed(i: int) -> bool:
    return i % BLOCKED_EVERY != 0


def patron_item(i: int, key: str | None = None) -> dict:
    """Patron ``i`` as the central service sends it (docs/central-protocol.md)."""
    return {
        "card_key": key or card_key(KEY, card_number(i)),
        "self_service": True,
        "blocked_reason": None if allowed(i) else "fines",
        "valid_until": "2099-12-31",
        "age_ok_from": "2000-01-01",
        "staff": False,
    }


def patron_keys(count: int) -> list[str]:
    """Every patron's card key."""
    return [patron_key(i) for i in range(count)]


def patron_key(i: int) -> str:
    """Patron ``i``'s card key; the HMAC inlined, as ``card_key`` would cost twice as long."""
    return hmac.new(KEY, card_number(i).encode(), hashlib.sha256).hexdigest()


def consortium_db(data_dir: Path, patrons: int, events: int, count_years: int) -> Path:
    """The cached database of this size, built first if it is not there yet."""
    path = data_dir / f"consortium-{patrons}p-{events}e-{count_years}y.db"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        _build(path, patrons, events, count_years)
        print(f"bench: built {path.name} in {time.monotonic() - started:.0f} s", flush=True)
    return path


def working_copy(cached: Path, destination: Path) -> Path:
    """A copy to write into, whose patron cache counts as just confirmed by the central service."""
    shutil.copyfile(cached, destination)
    store = Store(destination)
    store.note_sync_success("patrons", datetime.now(timezone.utc))
    store.close()
    return destination


def _build(path: Path, patrons: int, events: int, count_years: int) -> None:
    building = path.with_name(path.name + ".building")
    for leftover in building.parent.glob(building.name + "*"):
        leftover.unlink()
    store = Store(building)
    store.set_weekly({day: (Period(0, 1440, "self_service"),) for day in range(7)})
    store.close()
    conn = sqlite3.connect(building)
    conn.execute("PRAGMA synchronous=OFF")
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    fetched = now.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    keys = patron_keys(patrons)
    with conn:
        for start in range(0, patrons, _CHUNK):
            conn.executemany(
                "INSERT INTO patrons (card_key, self_service, blocked_reason, valid_until, age_ok_from, staff, fetched_at, source)"
                " VALUES (:card_key, :self_service, :blocked_reason, :valid_until, :age_ok_from, 0, :fetched, 'central')",
                [patron_item(i, keys[i]) | {"fetched": fetched} for i in range(start, min(patrons, start + _CHUNK))],
            )
    first_event = now - timedelta(days=EVENT_DAYS)
    with conn:
        # In SQL, because five million rows through Python take ten times as long.
        conn.execute(
            """
            WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :count)
            INSERT INTO events (uuid, ts, door, type, reason, mode, card_key)
            SELECT printf('00000000-0000-4000-8000-%012x', i),
                   strftime('%Y-%m-%dT%H:%M:%S', :start + i * :step, 'unixepoch') || printf('.%06dZ', (i * 7919) % 1000000),
                   CASE i % 2 WHEN 0 THEN 'main' ELSE 'side' END,
                   CASE WHEN i % 10 = 9 THEN 'exit' ELSE 'tap' END,
                   CASE WHEN i % 10 = 9 THEN NULL WHEN i % 10 = 8 THEN 'blocked' ELSE 'granted' END,
                   CASE WHEN (i / 7) % 3 = 0 THEN 'staffed' ELSE 'self_service' END,
                   CASE WHEN i % 10 = 9 THEN NULL ELSE lower(hex(randomblob(32))) END
            FROM n
            """,
            {"count": events, "start": first_event.timestamp(), "step": EVENT_DAYS * 86400 / max(events, 1)},
        )
        # Every event is already with the central service, as on a branch that has been online.
        conn.execute("INSERT OR REPLACE INTO sync_state (stream, pushed_upto) SELECT 'events', coalesce(max(seq), 0) FROM events")
    with conn:
        conn.execute(
            """
            WITH RECURSIVE h(t) AS (SELECT :start UNION ALL SELECT t + 3600 FROM h WHERE t + 3600 < :end)
            INSERT INTO hourly_counts (hour, door, metric, count)
            SELECT strftime('%Y-%m-%dT%H:00Z', t, 'unixepoch'), d.door, m.metric, 1 + abs(random()) % m.spread
            FROM h,
                 (SELECT 'main' AS door UNION ALL SELECT 'side') AS d,
                 (SELECT 'visit_self_service' AS metric, 30 AS spread UNION ALL SELECT 'visit_staffed', 40
                  UNION ALL SELECT 'exit', 60 UNION ALL SELECT 'denied_blocked', 3) AS m
            WHERE CAST(strftime('%H', t, 'unixepoch') AS INTEGER) BETWEEN 5 AND 18
            """,
            {"start": (now - timedelta(days=365 * count_years)).timestamp(), "end": now.timestamp()},
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    building.rename(path)
