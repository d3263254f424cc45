"""``omaovi sync`` against a central service on 127.0.0.1 (tests/central_server.py).

Each test plays one thing a branch lives through: the first full snapshot, the
changes after it, the central service forgetting a cursor, a booth booking
arriving, an outage, a crash at the worst moment, a broken or enormous answer, a
throttled or refused request, and a clock that is off. What is checked is what
the branch would notice: who the door lets in, what the central service has
received, and what the sync state and the log say.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from device.cli import main
from device.config import ConfigError, load_with_central, parse
from device.events import TAP, Event
from device.policy import Patron, Reason, decide
from device.schedule import Period, Schedule
from device.store import Store
from sync.central import SyncRunner, event_json
from sync.central_parse import parse_event_ack, parse_hours_page, parse_patron_page, parse_reservation_page
from sync.kirkanta import parse_schedules
from tests.central_server import Answer, CentralServer
from tests.simulated import with_pythonpath

REPO = Path(__file__).resolve().parent.parent
TOKEN = "kallio-device-token"
HELSINKI = ZoneInfo("Europe/Helsinki")
SELF_SERVICE_ALL_DAY = Schedule(weekly={day: (Period(0, 1440, "self_service"),) for day in range(7)}, exceptions={}, tz=HELSINKI)


def key(n: int) -> str:
    return hashlib.sha256(f"card-{n}".encode()).hexdigest()


#: A card that stays valid through any test, whatever the day it runs.
VALID_UNTIL = date.today() + timedelta(days=3650)


def patron(n: int, **changes) -> dict:
    item = {
        "card_key": key(n), "self_service": True, "blocked_reason": None, "valid_until": VALID_UNTIL.isoformat(),
        "age_ok_from": "2000-01-01", "staff": False, "deleted": False,
    }
    return {**item, **changes}


def write_config(directory: Path, url: str, *, token: str = TOKEN, central_extra: str = "") -> Path:
    (directory / "central.token").write_text(token + "\n", encoding="utf-8")
    path = directory / "omaovi.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            branch = "kallio"
            database = "omaovi.db"
            consortium_key_file = "consortium.key"

            [[doors]]
            id = "entrance"
            kind = "entrance"
            lock_pin = 17

            [[doors]]
            id = "booth-1"
            kind = "booth"
            resource = "smartblock-1"
            lock_pin = 5

            [central]
            base_url = "{url}"
            token_file = "central.token"
            timeout = 5
            """
        )
        + central_extra,
        encoding="utf-8",
    )
    return path


class Branch:
    """One branch's sync set up against the test central, with every wait recorded."""

    def __init__(self, directory: Path, central: CentralServer, *, token: str = TOKEN, central_extra: str = "", **runner_args):
        self.config_path = write_config(directory, central.url, token=token, central_extra=central_extra)
        self.config, self.central_config = load_with_central(self.config_path)
        self.store = Store(self.config.database)
        self.waits: list[float] = []
        session = requests.Session()
        session.trust_env = False  # no proxy from the environment between us and 127.0.0.1
        runner_args.setdefault("sleep", self.waits.append)
        self.runner = SyncRunner(self.store, self.config, self.central_config, session=session, **runner_args)

    def sync(self) -> dict:
        return self.runner.run_once()

    def enter(self, n: int) -> Reason:
        """What the entrance says to card n now, in self-service hours."""
        now = datetime.now(timezone.utc)
        found = self.store.patron(key(n), now.date())
        return decide(key(n), self.config.door("entrance"), now, SELF_SERVICE_ALL_DAY, found, [], self.config.policy).reason

    def error(self, stream: str) -> str | None:
        return self.store.sync_state(stream)["last_error"]

    def tap(self, n: int) -> Event:
        event = Event(ts=datetime.now(timezone.utc), door="entrance", type=TAP, reason="granted", mode="self_service", card_key=key(n))
        self.store.record([event])
        return event


@pytest.fixture
def central():
    with CentralServer(token=TOKEN, page_size=2) as server:
        yield server


@pytest.fixture
def branch(tmp_path, central):
    return Branch(tmp_path, central)


# -- patrons --------------------------------------------------------------------
def test_a_full_snapshot_then_only_changes(branch, central):
    central.patrons.put(patron(1), patron(2, blocked_reason="fines"), patron(3), patron(4, self_service=False), patron(5))

    assert branch.sync() == {"events": None, "patrons": None, "reservations": None}
    assert [q.get("cursor", "")[:2] for q in central.gets("patrons")] == ["", "s:", "s:"]  # three pages of two
    assert branch.store.patron_count() == 5
    assert [branch.enter(n) for n in (1, 2, 4, 9)] == [Reason.GRANTED, Reason.BLOCKED, Reason.TERMS_NOT_ACCEPTED, Reason.UNKNOWN_CARD]

    central.patrons.put(patron(1, blocked_reason="lost card"), {"card_key": key(3), "deleted": True}, patron(9))
    branch.sync()

    assert central.gets("patrons")[-2]["cursor"] == "d:p0:5"  # changes only, from where the snapshot ended
    assert [branch.enter(n) for n in (1, 3, 9)] == [Reason.BLOCKED, Reason.UNKNOWN_CARD, Reason.GRANTED]
    assert branch.store.patron_count() == 5
    state = branch.store.sync_state("patrons")
    assert (state["cursor"], state["last_error"]) == ("d:p0:8", None)


def test_gone_cursor_takes_a_new_snapshot_while_the_door_keeps_the_old_cache(branch, central, tmp_path):
    central.patrons.put(patron(1), patron(2), patron(3))
    branch.sync()
    # The central service compacts its log (the old cursor is gone) and card 3 left in between.
    central.patrons.put({"card_key": key(3), "deleted": True}, patron(4), patron(5))
    central.patrons.forget_cursors()

    seen_mid_snapshot = []

    def door_reads_and_writes(stream, query):
        if stream == "patrons" and query.get("cursor", "").startswith("s:"):
            door = Store(tmp_path / "omaovi.db", busy_timeout_ms=200)
            seen_mid_snapshot.append((door.patron_count(), door.patron(key(3)) is not None, door.patron(key(4)) is not None))
            door.record([Event(ts=datetime.now(timezone.utc), door="entrance", type=TAP, reason="granted", mode="self_service", card_key=key(1))])
            door.close()

    central.hook = door_reads_and_writes
    running_door = Store(tmp_path / "omaovi.db")  # the device process, open all along
    assert running_door.patron(key(3)) is not None
    assert branch.sync()["patrons"] is None
    assert running_door.patron(key(3)) is None and running_door.patron(key(4)) is not None

    # The delta cursor got 410, then a snapshot started from scratch.
    assert [q.get("cursor") for q in central.gets("patrons")][2:4] == ["d:p0:3", None]
    # Between snapshot pages the door saw the whole old cache, and could still write.
    assert seen_mid_snapshot == [(3, True, False)]
    assert branch.store.patron_count() == 4
    assert [branch.enter(n) for n in (3, 4, 5)] == [Reason.UNKNOWN_CARD, Reason.GRANTED, Reason.GRANTED]


def test_unchanged_cards_stay_trusted_and_a_full_snapshot_is_taken_daily(tmp_path, central):
    """Changes rewrite only changed cards; the rest are as fresh as the last good round."""
    now = [datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)]
    branch = Branch(tmp_path, central, clock=lambda: now[0])
    central.patrons.put(patron(1), patron(2))
    branch.sync()

    now[0] += timedelta(hours=23)
    central.patrons.put(patron(2, valid_until=(VALID_UNTIL + timedelta(days=1)).isoformat()))
    branch.sync()
    assert central.gets("patrons")[-1] == {"cursor": "d:p0:2"}
    assert branch.store.patron(key(1)).fetched_at == now[0], "confirmed by the change round, though not rewritten"

    now[0] += timedelta(hours=2)
    branch.sync()
    assert central.gets("patrons")[-1] == {}  # a snapshot again
    assert branch.store.patron(key(1)).fetched_at == now[0]
    assert branch.store.sync_state("patrons")["last_snapshot"].startswith("2026-11-24T09:00:00")


def test_a_large_snapshot_replaces_the_whole_cache(tmp_path):
    """Large enough that the old cache is cleared away in several slices."""
    store = Store(tmp_path / "omaovi.db")
    now = datetime.now(timezone.utc)
    store.put_patrons([Patron(card_key=key(n), self_service=True, fetched_at=now) for n in range(45_000)], source="csv")
    store.begin_patron_snapshot()
    for start in (40_000, 50_000, 60_000):
        store.stage_patrons([Patron(card_key=key(n), fetched_at=now) for n in range(start, start + 10_000)], source="central")

    assert store.patron_count() == 45_000  # staged, not yet in use
    assert store.commit_patron_snapshot(stream="patrons", cursor="d:1", at=now) == 30_000

    assert store.patron_count() == 30_000
    assert store.patron(key(39_999)) is None and store.patron(key(69_999)).self_service is False
    assert store.conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'patrons_%'").fetchall() == []


#: ``omaovi sync`` taking one round, and the power going at a given point of a snapshot.
CUT_SNAPSHOT = textwrap.dedent(
    """
    import os, sys, time
    from device.config import load_with_central
    from device.store import Store
    from sync.central import SyncRunner

    config, central = load_with_central(sys.argv[1])
    store = Store(config.database)
    if sys.argv[2] == "staging":  # with every page staged, just before the swap
        store.commit_patron_snapshot = lambda **kwargs: os._exit(9)
    else:  # just after the swap, with the first slice of the replaced cache cleared away
        commit = store.commit_patron_snapshot

        def commit_then_cut(**kwargs):
            time.sleep = lambda seconds: os._exit(9)
            return commit(**kwargs)

        store.commit_patron_snapshot = commit_then_cut
    SyncRunner(store, config, central).run_once()
    """
)


@pytest.mark.parametrize("cut", ["staging", "clearing"])
def test_a_snapshot_cut_by_a_power_cut_is_cleared_away_when_sync_starts_again(branch, central, cut):
    """A kill or a power cut during a snapshot leaves its staging table, or the replaced
    cache half cleared away. The door never reads either; the sync service clears them
    away when it starts again, and the next snapshot reuses their space."""
    central.page_size = 500
    central.patrons.put(*(patron(n) for n in range(3000)))
    branch.sync()
    central.patrons.put(*({"card_key": key(n), "deleted": True} for n in range(1000)), *(patron(n) for n in range(3000, 4000)))
    central.patrons.forget_cursors()  # the next round takes the new list as a snapshot
    env = with_pythonpath({**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}, str(REPO))
    assert subprocess.run([sys.executable, "-c", CUT_SNAPSHOT, str(branch.config_path), cut], env=env, timeout=60).returncode == 9

    def leftovers() -> list[str]:
        return [name for (name,) in branch.store.conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'patrons_%'")]

    def pages() -> tuple[int, int]:
        return tuple(branch.store.conn.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_count", "freelist_count"))

    # Before the swap the door decides from the old list, after it from the new one.
    in_use = [Reason.GRANTED, Reason.UNKNOWN_CARD] if cut == "staging" else [Reason.UNKNOWN_CARD, Reason.GRANTED]
    assert leftovers() == ["patrons_staging" if cut == "staging" else "patrons_retired"]
    assert [branch.enter(0), branch.enter(3500)] == in_use
    at_cut = pages()

    stop = threading.Event()
    stop.set()  # the service starts, and is stopped before its first round
    branch.runner.run_forever(stop)

    assert leftovers() == []
    assert [branch.enter(0), branch.enter(3500)] == in_use
    cleared = pages()
    assert cleared[0] == at_cut[0] and cleared[1] > at_cut[1], "the leftover's pages are free in the file"

    assert branch.sync()["patrons"] is None
    assert [branch.enter(0), branch.enter(3500)] == [Reason.UNKNOWN_CARD, Reason.GRANTED]
    assert pages()[0] <= at_cut[0], "the next snapshot reused the leftover's space"


def test_an_empty_snapshot_does_not_wipe_a_full_cache(branch, central):
    central.patrons.put(patron(1))
    branch.sync()
    central.patrons.put({"card_key": key(1), "deleted": True})
    central.patrons.forget_cursors()

    branch.sync()

    assert "the snapshot has no patrons; refusing to empty a cache of 1" in branch.error("patrons")
    assert branch.enter(1) == Reason.GRANTED


# -- reservations ---------------------------------------------------------------
def test_a_booking_made_centrally_opens_the_booth_for_that_card(branch, central):
    now = datetime.now(timezone.utc)
    booth = branch.config.door("booth-1")

    def booth_says(n: int) -> Reason:
        reservations = branch.store.reservations_for(key(n), "smartblock-1", now)
        return decide(key(n), booth, now, SELF_SERVICE_ALL_DAY, None, reservations, branch.config.policy).reason

    branch.sync()
    assert booth_says(7) == Reason.NO_RESERVATION

    begin = (now - timedelta(minutes=5)).astimezone(HELSINKI).isoformat(timespec="seconds")
    end = (now + timedelta(minutes=55)).astimezone(HELSINKI).isoformat(timespec="seconds")
    booking = {"id": "r-123", "resource": "smartblock-1", "card_key": key(7), "begin": begin, "end": end, "state": "confirmed"}
    central.reservations.put(booking)
    branch.sync()
    assert booth_says(7) == Reason.GRANTED
    assert booth_says(8) == Reason.NO_RESERVATION

    central.reservations.put({**booking, "state": "cancelled"})
    branch.sync()
    assert booth_says(7) == Reason.NO_RESERVATION


def test_a_gone_reservation_cursor_takes_a_new_snapshot(branch, central):
    now = datetime.now(timezone.utc)
    slot = {"resource": "smartblock-1", "begin": (now + timedelta(hours=1)).isoformat(), "end": (now + timedelta(hours=2)).isoformat(), "state": "confirmed"}
    central.reservations.put({**slot, "id": "r-1", "card_key": key(1)}, {**slot, "id": "r-2", "card_key": key(2)})
    branch.sync()
    # r-2 is removed and r-3 booked; the change log is then compacted, so only a
    # snapshot that replaces the device's reservations can drop r-2.
    central.reservations.put({"id": "r-2", "deleted": True}, {**slot, "id": "r-3", "card_key": key(3)})
    central.reservations.forget_cursors()

    assert branch.sync()["reservations"] is None

    booked = [r.card_key for r in branch.store.reservations_between("smartblock-1", now, now + timedelta(hours=3))]
    assert booked == [key(1), key(3)]


# -- events -----------------------------------------------------------------------
def test_events_reach_the_central_service_exactly_once_across_an_outage(branch, central):
    before = [branch.tap(n) for n in range(3)]
    central.down = True

    results = branch.sync()

    assert "HTTP 503" in results["events"] and "gave up after 5 attempts" in results["events"]
    assert "HTTP 503" in branch.error("events")
    assert len(branch.waits) == 3 * 4  # four waits between five attempts, for each of three streams
    first_waits = branch.waits[:4]
    assert all(0.5 * 2**i <= wait <= 2**i for i, wait in enumerate(first_waits))  # exponential, with jitter
    assert central.events == {}

    after = [branch.tap(n) for n in range(3, 5)]
    central.down = False
    assert branch.sync()["events"] is None
    assert branch.sync()["events"] is None  # nothing left to send: no second upload

    assert list(central.events) == [e.uuid for e in before + after]  # in order, each once
    assert central.event_posts == [(5, 0)]
    assert branch.store.unpushed_event_count() == 0
    assert branch.error("events") is None
    sent = central.events[before[0].uuid]
    assert sent["card_key"] == key(0) and sent["ts"].endswith("Z") and sent["seq"] == 1


def test_events_are_sent_in_batches_in_seq_order(tmp_path, central):
    branch = Branch(tmp_path, central, event_batch=2)
    taps = [branch.tap(n) for n in range(5)]
    branch.sync()
    assert central.event_posts == [(2, 0), (2, 0), (1, 0)]
    assert list(central.events) == [e.uuid for e in taps]
    assert [e["seq"] for e in central.events.values()] == [1, 2, 3, 4, 5]


def _garble(branch: Branch, event: Event, **columns) -> None:
    """What an old bug or a disk error could leave in the outbox: a row the protocol cannot carry."""
    sets = ", ".join(f"{name} = ?" for name in columns)
    with branch.store.conn:
        branch.store.conn.execute(f"UPDATE events SET {sets} WHERE uuid = ?", (*columns.values(), event.uuid))


def test_an_event_the_central_service_refuses_is_set_aside_and_the_outbox_goes_on(tmp_path, central):
    branch = Branch(tmp_path, central, event_batch=3)
    taps = [branch.tap(n) for n in range(5)]
    _garble(branch, taps[1], door="front door!")
    assert "1 event(s) refused as malformed and set aside" in branch.sync()["events"]
    assert list(central.events) == [e.uuid for n, e in enumerate(taps) if n != 1], "every other event arrived, in order"
    set_aside = branch.store.quarantined_events()
    assert [row["uuid"] for row in set_aside] == [taps[1].uuid]
    assert "events[1].door" in set_aside[0]["quarantine_error"]
    assert branch.store.status()["sync:events_quarantined"]["value"] == 1
    assert branch.store.unpushed_event_count() == 0

    posts = len(central.event_posts)
    branch.tap(9)
    assert branch.sync()["events"] is None, "the next round is healthy again"
    assert len(central.event_posts) == posts + 1 and central.event_posts[-1] == (1, 0), "the refused event is not sent again"


def test_a_refusal_that_names_no_event_is_narrowed_down_one_event_at_a_time(tmp_path, central):
    branch = Branch(tmp_path, central)
    taps = [branch.tap(n) for n in range(3)]
    _garble(branch, taps[2], type="Tap")
    central.queue("events", Answer(400, b'{"error": "bad batch"}', {"Content-Type": "application/json"}))
    branch.sync()
    assert list(central.events) == [taps[0].uuid, taps[1].uuid]
    assert [row["uuid"] for row in branch.store.quarantined_events()] == [taps[2].uuid]


def test_a_failure_between_send_and_mark_sends_again_and_the_central_side_dedupes(branch, central, monkeypatch):
    taps = [branch.tap(n) for n in range(3)]

    def disk_fails(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(branch.store, "mark_events_pushed", disk_fails)
    assert "database error: disk I/O error" in branch.sync()["events"]
    assert branch.store.unpushed_event_count() == 3
    monkeypatch.undo()

    assert branch.sync()["events"] is None
    assert central.event_posts == [(3, 0), (0, 3)]
    assert list(central.events) == [e.uuid for e in taps]
    assert branch.store.unpushed_event_count() == 0


def test_a_crash_between_send_and_mark_sends_again_and_the_central_side_dedupes(branch, central):
    taps = [branch.tap(n) for n in range(4)]
    crashing = textwrap.dedent(
        """
        import os, sys
        from device.config import load_with_central
        from device.store import Store
        from sync.central import SyncRunner

        config, central = load_with_central(sys.argv[1])
        store = Store(config.database)
        store.mark_events_pushed = lambda *args, **kwargs: os._exit(9)  # power cut right after the 2xx
        SyncRunner(store, config, central).run_once()
        """
    )
    env = with_pythonpath({**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}, str(REPO))
    done = subprocess.run([sys.executable, "-c", crashing, str(branch.config_path)], env=env, timeout=60)

    assert done.returncode == 9
    assert central.event_posts == [(4, 0)]
    assert branch.store.unpushed_event_count() == 4

    assert branch.sync()["events"] is None
    assert central.event_posts == [(4, 0), (0, 4)]
    assert list(central.events) == [e.uuid for e in taps]


def test_retention_keeps_events_the_central_service_has_not_received(branch, central):
    old = datetime.now(timezone.utc) - timedelta(days=200)
    branch.store.record([Event(ts=old, door="entrance", type=TAP, reason="granted", mode="self_service")])
    branch.store.record([Event(ts=old + timedelta(seconds=1), door="entrance", type=TAP, reason="closed", mode="closed")])
    cutoff = datetime.now(timezone.utc) - timedelta(days=90)

    assert branch.store.purge_pushed_events(cutoff) == 0
    branch.sync()
    branch.store.record([Event(ts=old + timedelta(seconds=2), door="entrance", type=TAP, reason="granted", mode="self_service")])
    assert branch.store.purge_pushed_events(cutoff) == 2
    assert [e["ts"][:19] for e in branch.store.events(limit=10)] == [(old + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")]


# -- answers that are refused -------------------------------------------------------
BAD_PAGES = [
    pytest.param(b'{"items": [', "not valid JSON: Expecting value at line 1, column 12 (character 11)", id="cut-off-json"),
    pytest.param(b'[1, 2]', 'expected a JSON object with "items", "cursor" and "more", got [1, 2]', id="not-an-object"),
    pytest.param(
        json.dumps({"items": [patron(1, self_service="yes")], "cursor": "d:9", "more": False}).encode(),
        'items[0].self_service: expected true or false, got "yes"', id="self-service-yes",
    ),
    pytest.param(
        b'{"items": [{"card_key": "CARD-12345", "self_service": true}], "cursor": "d:9", "more": false}',
        'items[0].card_key: "CARD-12345" is not 64 lowercase hex digits', id="card-key-not-hex",
    ),
    pytest.param(
        b'{"items": [{"card_key": "4000123412341234", "self_service": true}], "cursor": "d:9", "more": false}',
        'items[0].card_key: "[16 digits]" is not 64 lowercase hex digits', id="card-key-a-raw-card-number",
    ),
    pytest.param(
        b'{"items": [{"card_key": "%s", "self_service": true, "blocked_reason": null, "valid_until": "31.5.2027", "age_ok_from": null, "staff": false}], "cursor": "d:9", "more": false}' % key(1).encode(),
        'items[0].valid_until: "31.5.2027" is not a date (expected YYYY-MM-DD or null)', id="finnish-date",
    ),
    pytest.param(b'{"items": {}, "cursor": "d:9", "more": false}', "items: expected a list, got {}", id="items-not-a-list"),
    pytest.param(b'{"items": [], "more": false}', "cursor: missing", id="no-cursor"),
]


@pytest.mark.parametrize("body, problem", BAD_PAGES)
def test_a_malformed_answer_is_rejected_whole_and_the_old_cache_stays(branch, central, caplog, body, problem):
    central.patrons.put(patron(1), patron(2, blocked_reason="fines"))
    branch.sync()
    central.patrons.put(patron(1, blocked_reason="should never arrive"), patron(3))
    central.queue("patrons", Answer(200, body, {"Content-Type": "application/json"}))

    with caplog.at_level(logging.ERROR, logger="omaovi.sync"):
        results = branch.sync()

    expected = f"rejected the answer: {problem}; the cache is unchanged"
    assert results["patrons"] == expected
    assert branch.error("patrons") == expected
    assert f"central sync: patrons: {expected}" in caplog.messages
    assert [branch.enter(n) for n in (1, 2, 3)] == [Reason.GRANTED, Reason.BLOCKED, Reason.UNKNOWN_CARD]
    assert branch.store.sync_state("patrons")["cursor"] == "d:p0:2"  # the next round asks for the same changes


def test_a_malformed_snapshot_page_leaves_the_old_cache_whole(branch, central):
    central.patrons.put(patron(1), patron(2))
    branch.sync()
    central.patrons.put(patron(3), patron(4), patron(5))
    central.patrons.forget_cursors()
    bad_second_page = Answer(200, b'{"items": [{"card_key": "zz"}], "cursor": "x", "more": false}')
    central.hook = lambda stream, query: central.queue("patrons", bad_second_page) if query.get("cursor") is None else None

    assert "items[0].card_key" in branch.sync()["patrons"]
    assert branch.store.patron_count() == 2
    assert branch.store.conn.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'patrons_%'").fetchone()[0] == 0


def test_a_50_mb_answer_is_cut_off_and_rejected(branch, central, caplog):
    central.patrons.put(patron(1))
    branch.sync()
    central.patrons.put(patron(1, blocked_reason="should never arrive"))
    megabyte = b" " * 1_000_000
    central.queue("patrons", Answer(200, (megabyte for _ in range(51)), {"Content-Type": "application/json"}))

    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="omaovi.sync"):
        results = branch.sync()

    assert results["patrons"] == "the answer passed max_response_bytes = 50_000_000 and was cut off unread"
    assert "central sync: patrons: the answer passed max_response_bytes = 50_000_000 and was cut off unread" in caplog.messages
    assert branch.enter(1) == Reason.GRANTED
    assert time.monotonic() - started < 30


def test_an_answer_declared_too_large_is_refused_before_reading(tmp_path, central):
    branch = Branch(tmp_path, central, central_extra="max_response_bytes = 10000\n")
    central.queue("reservations", Answer(200, b"[" + b"0," * 6000 + b"0]"))
    assert branch.sync()["reservations"] == "the answer is 12_003 bytes, more than max_response_bytes = 10_000"


# -- throttling, refusal, clocks ---------------------------------------------------
def test_429_waits_as_long_as_retry_after_says(branch, central):
    central.patrons.put(patron(1))
    central.queue("patrons", Answer(429, b'{"error": "slow down"}', {"Retry-After": "7"}))

    assert branch.sync()["patrons"] is None
    assert branch.waits == [7.0]
    assert branch.enter(1) == Reason.GRANTED


def test_a_brief_503_is_retried_within_the_round(branch, central):
    central.patrons.put(patron(1))
    central.queue("patrons", Answer(503, b"busy"))
    assert branch.sync()["patrons"] is None
    assert len(branch.waits) == 1 and 0.5 <= branch.waits[0] <= 1.0
    assert branch.enter(1) == Reason.GRANTED


def test_a_server_that_does_not_answer_times_out_and_is_retried(tmp_path, central):
    central.patrons.put(patron(1))
    branch = Branch(tmp_path, central)
    branch.runner.central = dataclasses.replace(branch.central_config, timeout=1.0)
    stalls = [2.0]
    central.hook = lambda stream, query: time.sleep(stalls.pop()) if stream == "patrons" and stalls else None

    started = time.monotonic()
    assert branch.sync()["patrons"] is None

    assert 1.0 <= time.monotonic() - started < 5
    assert len(branch.waits) == 1  # one timeout, one retry
    assert branch.enter(1) == Reason.GRANTED


@pytest.mark.parametrize("status", [503, 502, 500])
def test_a_5xx_with_retry_after_waits_as_long_as_asked(branch, central, status):
    central.patrons.put(patron(1))
    central.queue("patrons", Answer(status, b"down for maintenance", {"Retry-After": "7"}))
    assert branch.sync()["patrons"] is None
    assert branch.waits == [7.0]
    assert branch.enter(1) == Reason.GRANTED


def test_a_503_asking_for_a_wait_beyond_the_cap_ends_the_round_without_hammering(branch, central):
    branch.tap(1)
    central.down, central.down_retry_after = True, "3600"
    results = branch.sync()
    assert all("HTTP 503" in error and "asked to wait 3600 s; trying again next round" in error for error in results.values())
    assert branch.waits == []
    assert len(central.requests) == len(results), "one request per stream, not five"


def test_a_retry_after_beyond_the_cap_ends_the_round(branch, central):
    central.queue("patrons", Answer(429, b"", {"Retry-After": "3600"}))
    assert "asked to wait 3600 s; trying again next round" in branch.sync()["patrons"]
    assert branch.waits == []


def test_a_wrong_token_is_a_clear_error_in_every_stream(tmp_path, central):
    central.patrons.put(patron(1))
    branch = Branch(tmp_path, central, token="someone-elses-token")
    branch.tap(1)

    results = branch.sync()

    token_file = tmp_path / "central.token"
    expected = (
        f"the central service refused this branch's token (HTTP 401 from POST {central.url}/v1/branches/kallio/events); "
        f"check central.token_file ({token_file})"
    )
    assert results == {"events": expected, "patrons": expected, "reservations": expected}  # not asked again once refused
    assert branch.error("patrons") == expected
    assert central.requests == []  # the test central logs only requests with a valid token
    assert branch.store.unpushed_event_count() == 1
    assert branch.waits == []  # a refusal is not retried
    assert branch.store.patron_count() == 0


def test_a_missing_token_file_is_named(branch, tmp_path):
    (tmp_path / "central.token").unlink()
    assert branch.sync()["patrons"] == f"cannot read the token file {tmp_path / 'central.token'}: no such file"


def test_a_server_clock_a_few_minutes_off_is_warned_about(branch, central, caplog):
    central.clock_offset = 180
    with caplog.at_level(logging.WARNING, logger="omaovi.sync"):
        branch.sync()
    assert any(re.fullmatch(r"central sync: this device's clock is 1(79|80|81) s behind the central service's; check NTP \(timedatectl\)", m) for m in caplog.messages)
    assert 178 <= branch.store.status()["sync:clock_drift_seconds"]["value"] <= 182

    caplog.clear()
    central.clock_offset = 0
    with caplog.at_level(logging.WARNING, logger="omaovi.sync"):
        branch.sync()
    assert not [m for m in caplog.messages if "clock" in m]


# -- hours ------------------------------------------------------------------------------
def test_hours_come_from_the_central_service_only_when_it_manages_them(tmp_path, central):
    today = datetime.now(HELSINKI).date()
    central.hours[today.isoformat()] = {
        "date": today.isoformat(), "closed": False,
        "times": [{"from": "07:00", "to": "10:00", "status": 2}, {"from": "10:00", "to": "16:00", "status": 1}],
    }
    (tmp_path / "plain").mkdir()
    plain = Branch(tmp_path / "plain", central)
    assert "hours" not in plain.sync()
    assert central.gets("hours") == []

    (tmp_path / "managed").mkdir()
    managed = Branch(tmp_path / "managed", central, central_extra="hours_managed_centrally = true\n")
    assert managed.sync()["hours"] is None
    assert central.gets("hours") == [{"from": today.isoformat(), "to": (today + timedelta(days=60)).isoformat()}]
    periods = managed.store.schedule(HELSINKI).exceptions[today]
    assert [(p.start, p.end, p.mode) for p in periods] == [(420, 600, "self_service"), (600, 960, "staffed")]


def test_bad_hours_are_rejected_and_the_old_hours_stay(tmp_path, central):
    branch = Branch(tmp_path, central, central_extra="hours_managed_centrally = true\n")
    day = date(2026, 12, 24)
    branch.store.set_exceptions({day: (Period(600, 900, "staffed"),)})
    central.queue("hours", Answer(200, b'{"items": [{"date": "2026-12-24", "closed": false, "times": [{"from": "10:00", "to": "09:00", "status": 2}]}]}'))

    error = branch.sync()["hours"]

    assert error == "rejected the hours: items[0] (2026-12-24).times[0].to: 09:00 is not after from 10:00; the hours are unchanged"
    assert branch.store.schedule(HELSINKI).exceptions[day] == (Period(600, 900, "staffed"),)


# -- the service loop -------------------------------------------------------------------
def test_run_forever_stops_promptly_even_while_waiting_to_retry(tmp_path, central):
    session = requests.Session()
    session.trust_env = False
    config, central_config = load_with_central(write_config(tmp_path, central.url))
    runner = SyncRunner(Store(config.database), config, central_config, session=session)
    central.down = True
    stop = threading.Event()
    thread = threading.Thread(target=runner.run_forever, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 10
    while not central.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert central.requests  # it did try


def test_run_forever_syncs_every_interval(tmp_path, central):
    central.patrons.put(patron(1))
    branch = Branch(tmp_path, central, central_extra="interval = 10\n")
    stop = threading.Event()
    rounds = []
    original = branch.runner.run_once
    branch.runner.run_once = lambda: rounds.append(original()) or (stop.set() if len(rounds) == 1 else None)
    branch.runner.run_forever(stop)
    assert rounds == [{"events": None, "patrons": None, "reservations": None}]
    assert branch.enter(1) == Reason.GRANTED


# -- the [central] config section ---------------------------------------------------------
def test_the_central_section_is_read_with_its_defaults(tmp_path):
    config, central = load_with_central(write_config(tmp_path, "https://central.example.fi/api/"))
    assert central.base_url == "https://central.example.fi/api"
    assert central.token_file == tmp_path / "central.token"
    assert (central.timeout, central.hours_managed_centrally, central.interval, central.max_response_bytes) == (5.0, False, 300, 50_000_000)
    assert load_with_central(tmp_path / "omaovi.toml")[0] == config
    runner = SyncRunner.from_config_file(tmp_path / "omaovi.toml")
    assert (runner.config, runner.central, runner.streams) == (config, central, ("events", "patrons", "reservations"))
    assert runner.store.path == tmp_path / "omaovi.db"


def test_a_config_without_a_central_section_has_none(tmp_path):
    path = write_config(tmp_path, "https://x.example")
    path.write_text(path.read_text().split("[central]")[0])
    assert load_with_central(path)[1] is None
    with pytest.raises(ConfigError) as raised:
        SyncRunner.from_config_file(path)
    assert str(raised.value) == f"{path}: central = (missing): required table for omaovi sync, with at least base_url and token_file"


def test_every_problem_in_the_central_section_is_reported(tmp_path, capsys):
    extra = 'hours_managed_centrally = "yes"\ninterval = 1\nmax_response_bytes = 0\nretries = 3\n'
    path = write_config(tmp_path, "ftp://central.example.fi", central_extra=extra)
    path.write_text(path.read_text().replace("timeout = 5", "timeout = 0"))

    assert main(["check-config", str(path)]) == 1

    assert capsys.readouterr().out.splitlines() == [
        f'{path}: central.base_url = "ftp://central.example.fi": must be an http:// or https:// URL such as "https://central.example.fi/api"',
        f"{path}: central.timeout = 0: must be a number from 1 to 120",
        f'{path}: central.hours_managed_centrally = "yes": must be true or false',
        f"{path}: central.interval = 1: must be a whole number from 10 to 86400",
        f"{path}: central.max_response_bytes = 0: must be a whole number from 10000 to 1000000000",
        f"{path}: central.retries = 3: unknown key; allowed keys here: "
        "base_url, hours_managed_centrally, interval, max_response_bytes, timeout, token_file",
        "6 problem(s) found.",
    ]


def test_the_central_section_needs_a_url_and_a_token_file(tmp_path):
    path = write_config(tmp_path, "https://x.example")
    text = path.read_text().replace('base_url = "https://x.example"\n', "").replace('token_file = "central.token"\n', "")
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_with_central(path)
    assert str(raised.value).splitlines() == [
        f'{path}: central.base_url = (missing): required; must be an http:// or https:// URL such as "https://central.example.fi/api"',
        f"{path}: central.token_file = (missing): required; must be a file path (relative paths are relative to this file)",
    ]


def test_the_central_section_must_be_a_table(tmp_path):
    with pytest.raises(ConfigError) as raised:
        parse({"branch": "kallio", "database": "x.db", "consortium_key_file": "k", "central": "https://x",
               "doors": [{"id": "entrance", "kind": "entrance", "lock_pin": 17}]}, tmp_path / "omaovi.toml")
    assert str(raised.value) == f'{tmp_path / "omaovi.toml"}: central = "https://x": must be a table'


# -- the protocol documents ---------------------------------------------------------------
PROTOCOL = (REPO / "docs" / "central-protocol.md").read_text(encoding="utf-8")
OPENAPI = (REPO / "docs" / "central-openapi.yaml").read_text(encoding="utf-8")


def example(name: str) -> bytes:
    return re.search(rf"<!-- example: {name} -->\s*```json\n(.*?)```", PROTOCOL, re.S).group(1).encode()


def test_the_protocol_examples_are_what_the_device_accepts_and_sends(branch):
    patrons = parse_patron_page(example("patrons-page"), datetime.now(timezone.utc))
    assert (len(patrons.upserts), len(patrons.deleted), patrons.more) == (1, 1, False)
    assert parse_reservation_page(example("reservations-page")).reservations[0].resource == "smartblock-1"
    assert len(parse_schedules({"items": parse_hours_page(example("hours-page"))[0]})) == 2
    assert parse_event_ack(example("events-answer")).duplicates == 1

    branch.tap(1)
    sent = event_json(branch.store.events_to_push(1)[0])
    documented = json.loads(example("events-post"))["events"][0]
    assert list(sent) == list(documented)


def test_the_openapi_file_covers_every_endpoint_the_device_calls():
    for path in ("patrons", "reservations", "hours", "events"):
        assert f"  /v1/branches/{{branch}}/{path}:\n" in OPENAPI
    assert OPENAPI.startswith("openapi: 3.1.0\n")


def test_the_protocol_shows_a_real_rejection_line(branch, central, caplog):
    line = re.search(r"```text\n(central sync: patrons: .*)\n```", PROTOCOL).group(1)
    central.queue("patrons", Answer(200, b'{"items": [{"card_key": "%s", "self_service": "yes"}], "cursor": "c", "more": false}' % key(1).encode()))
    with caplog.at_level(logging.ERROR, logger="omaovi.sync"):
        branch.sync()
    assert line in caplog.messages


# -- the command and the device's side ---------------------------------------------
def test_omaovi_sync_once_reports_success_and_failure_by_exit_code(tmp_path, central, capsys, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # no proxy from the environment between us and the test central
    config_path = write_config(tmp_path, central.url)
    central.patrons.put(patron(1), patron(2))
    assert main(["sync", "--once", "--config", str(config_path)]) == 0
    assert Store(tmp_path / "omaovi.db").patron_count() == 2
    (tmp_path / "central.token").write_text("revoked-token\n")
    assert main(["sync", "--once", "--config", str(config_path)]) == 1
    assert "patrons:" in capsys.readouterr().err


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_omaovi_sync_once_stops_within_a_second_while_it_retries(tmp_path, central, signal_number):
    central.down, central.down_retry_after = True, "30"
    config_path = write_config(tmp_path, central.url)
    env = with_pythonpath({**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}, str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "device.cli", "sync", "--once", "-c", str(config_path)], env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not central.requests and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert central.requests, f"sync never asked the central service: {proc.poll()}"
        time.sleep(0.3)  # well into the 30 s it was asked to wait
        asked = len(central.requests)
        sent_at = time.monotonic()
        proc.send_signal(signal_number)
        proc.wait(timeout=90)
        took = time.monotonic() - sent_at
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert took < 1.0, f"sync --once went on for {took:.1f} s after the signal"
    assert len(central.requests) == asked, "no request after the signal"
    assert proc.returncode == 1 and "stopped before every stream was done" in stderr


def test_omaovi_sync_as_the_first_command_on_a_new_branch_creates_the_database_folder(tmp_path, central, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    config_path = write_config(tmp_path, central.url)
    config_path.write_text(config_path.read_text().replace('database = "omaovi.db"', 'database = "state/omaovi/omaovi.db"'))
    central.patrons.put(patron(1))
    assert main(["sync", "--once", "--config", str(config_path)]) == 0
    assert Store(tmp_path / "state" / "omaovi" / "omaovi.db").patron_count() == 1


def test_the_device_keeps_old_events_the_central_service_has_not_received(tmp_path):
    from gpiozero.pins.mock import MockFactory

    from device.controller import Controller

    config_path = write_config(tmp_path, "http://127.0.0.1:9")
    (tmp_path / "consortium.key").write_text("k" * 32)
    config, _ = load_with_central(config_path)
    store = Store(config.database)
    old = Event(ts=datetime.now(timezone.utc) - timedelta(days=400), door="entrance", type=TAP, reason="granted", mode="self_service")
    store.record([old])
    keeping = Controller(config, store, pin_factory=MockFactory(), start_readers=False, keep_unpushed_events=True)
    keeping._apply_retention()
    assert [e["uuid"] for e in store.events()] == [old.uuid], "never sent, so never deleted"
    keeping.close()
    plain = Controller(config, store, pin_factory=MockFactory(), start_readers=False)
    plain._apply_retention()
    assert store.events() == [], "without a central service retention deletes it"
    plain.close()


def test_sync_without_a_central_section_stops_for_good_instead_of_restarting(tmp_path, capsys):
    """Exit status 2 is what the unit's RestartPreventExitStatus names."""
    config_path = write_config(tmp_path, "http://127.0.0.1:9")
    config_path.write_text(config_path.read_text().split("[central]")[0])
    assert main(["sync", "--once", "--config", str(config_path)]) == 2
    assert "central = (missing): required table for omaovi sync" in capsys.readouterr().err
    unit = (REPO / "systemd" / "omaovi-sync.service").read_text()
    assert "\nRestartPreventExitStatus=2\n" in unit


@pytest.mark.parametrize("header, expected", [("120", 120.0), (" 7 ", 7.0), ("²", None), ("soon", None), ("", None)])
def test_a_retry_after_header_is_read_or_ignored_never_raised(header, expected):
    from sync.central import _retry_after

    assert _retry_after(header, datetime(2026, 11, 25, tzinfo=timezone.utc)) == expected
