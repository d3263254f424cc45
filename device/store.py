"""The one SQLite database that device, web and sync share.

Each process opens its own ``Store``. The file is in WAL mode so the staff page can
read while the door writes, and every write is one short transaction. The schema
lives here alone, as numbered migrations that run when any process opens the file;
``PRAGMA user_version`` records how far a database has come.

No raw card number is ever written here: cards appear only as ``card_key``.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator
from zoneinfo import ZoneInfo

import sqlite_utils

from device.events import HOUR_FORMAT, PIN_LOCKOUT_CLEARED, Event, hour_text, parse_utc, utc_text
from device.hours_history import HoursHistory
from device.policy import Patron, Reservation
from device.schedule import Period, Schedule

MIGRATIONS: list[str] = [
    # 1: the device core.
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid TEXT NOT NULL UNIQUE,
        ts TEXT NOT NULL,
        door TEXT NOT NULL,
        type TEXT NOT NULL,
        reason TEXT,
        mode TEXT,
        card_key TEXT,
        detail TEXT
    );
    CREATE INDEX events_ts ON events (ts);
    CREATE TABLE hourly_counts (
        hour TEXT NOT NULL,
        door TEXT NOT NULL,
        metric TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (hour, door, metric)
    ) WITHOUT ROWID;
    CREATE TABLE patrons (
        card_key TEXT PRIMARY KEY,
        self_service INTEGER NOT NULL,
        blocked_reason TEXT,
        valid_until TEXT,
        age_ok_from TEXT,
        staff INTEGER NOT NULL DEFAULT 0,
        fetched_at TEXT NOT NULL,
        source TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE staff_cards (
        card_key TEXT PRIMARY KEY,
        note TEXT NOT NULL DEFAULT '',
        added_by TEXT NOT NULL,
        added_at TEXT NOT NULL
    );
    CREATE TABLE local_blocks (
        card_key TEXT PRIMARY KEY,
        until TEXT,
        note TEXT NOT NULL DEFAULT '',
        added_by TEXT NOT NULL,
        added_at TEXT NOT NULL
    );
    CREATE TABLE reservations (
        id TEXT PRIMARY KEY,
        resource TEXT NOT NULL,
        card_key TEXT NOT NULL,
        begin TEXT NOT NULL,
        end TEXT NOT NULL,
        state TEXT NOT NULL
    );
    CREATE INDEX reservations_card ON reservations (card_key, resource);
    CREATE INDEX reservations_end ON reservations (end);
    CREATE TABLE weekly_periods (
        weekday INTEGER NOT NULL CHECK (weekday BETWEEN 0 AND 6),
        start INTEGER NOT NULL,
        end INTEGER NOT NULL,
        mode TEXT NOT NULL,
        PRIMARY KEY (weekday, start)
    );
    CREATE TABLE exception_days (
        date TEXT PRIMARY KEY,
        note TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT 'local'
    );
    CREATE TABLE exception_periods (
        date TEXT NOT NULL REFERENCES exception_days (date) ON DELETE CASCADE,
        start INTEGER NOT NULL,
        end INTEGER NOT NULL,
        mode TEXT NOT NULL,
        PRIMARY KEY (date, start)
    );
    CREATE TABLE commands (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        door TEXT NOT NULL,
        action TEXT NOT NULL,
        until TEXT,
        requested_by TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        done_at TEXT,
        result TEXT
    );
    CREATE INDEX commands_pending ON commands (done_at);
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE device_status (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
    # 2: the central service. One row per stream (patrons, reservations, hours,
    # events) says where the stream stands and how its last attempt went; for the
    # events stream ``pushed_upto`` is the outbox: every event with a seq at or
    # below it has been accepted by the central service. ``last_snapshot`` is when
    # the patron cache was last replaced whole.
    """
    CREATE TABLE sync_state (
        stream TEXT PRIMARY KEY,
        cursor TEXT,
        pushed_upto INTEGER NOT NULL DEFAULT 0,
        last_attempt TEXT,
        last_success TEXT,
        last_error TEXT,
        last_error_at TEXT,
        last_snapshot TEXT
    );
    """,
    # 3: the staff page and the API. Passwords and tokens are stored only as hashes;
    # a web session is a random id in the browser's cookie and its hash here, so
    # that disabling a user or logging out ends the session on the server.
    """
    CREATE TABLE users (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('staff', 'admin')),
        language TEXT,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        password_changed_at TEXT NOT NULL
    );
    CREATE TABLE web_sessions (
        id_hash TEXT PRIMARY KEY,
        username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        last_seen TEXT NOT NULL
    );
    CREATE TABLE login_failures (
        address TEXT NOT NULL,
        ts TEXT NOT NULL
    );
    CREATE INDEX login_failures_address ON login_failures (address, ts);
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        detail TEXT,
        address TEXT
    );
    CREATE INDEX audit_log_ts ON audit_log (ts);
    CREATE TABLE api_tokens (
        name TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        revoked_at TEXT,
        last_used_at TEXT
    );
    """,
    # 4: the door extras: a cached, peppered PIN verifier per card (device/pins.py),
    # and an index for counting a card's recent wrong PINs from the event log.
    """
    ALTER TABLE patrons ADD COLUMN pin_verifier TEXT;
    CREATE INDEX events_card ON events (card_key, ts);
    """,
    # 5: the Today page asks every few seconds whether a kind of event (tailgating,
    # people left inside) happened today; without this index a day with none of
    # them read the whole event log to find out.
    """
    CREATE INDEX events_type_ts ON events (type, ts);
    """,
    # 6: staff may clear one card's PIN lockout; that command names the card (by its key).
    """
    ALTER TABLE commands ADD COLUMN card_key TEXT;
    """,
    # 7: counts_revision goes up with every change of the counters, whoever makes it,
    # so that the web process may keep a statistics query's sums until it does.
    """
    CREATE TRIGGER hourly_counts_inserted AFTER INSERT ON hourly_counts BEGIN
        INSERT INTO settings (key, value) VALUES ('counts_revision', '1')
        ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
    END;
    CREATE TRIGGER hourly_counts_updated AFTER UPDATE ON hourly_counts BEGIN
        INSERT INTO settings (key, value) VALUES ('counts_revision', '1')
        ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
    END;
    CREATE TRIGGER hourly_counts_deleted AFTER DELETE ON hourly_counts BEGIN
        INSERT INTO settings (key, value) VALUES ('counts_revision', '1')
        ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
    END;
    """,
    # 8: the weekly hours as a history, so that editing them never changes a past
    # day's open hours in the statistics (device/hours_history.py). Each version is
    # the whole pattern, from the instant set_weekly saved it; a version with no
    # periods (closed all week) still has its row in weekly_versions. A pattern
    # stored before this migration becomes the first version, dated 1970: the
    # earliest version covers every day before it, back to the branch's first day.
    """
    CREATE TABLE weekly_versions (
        changed_at TEXT PRIMARY KEY
    );
    CREATE TABLE weekly_history (
        changed_at TEXT NOT NULL REFERENCES weekly_versions (changed_at) ON DELETE CASCADE,
        weekday INTEGER NOT NULL CHECK (weekday BETWEEN 0 AND 6),
        start INTEGER NOT NULL,
        end INTEGER NOT NULL,
        mode TEXT NOT NULL,
        PRIMARY KEY (changed_at, weekday, start)
    );
    INSERT INTO weekly_versions (changed_at)
        SELECT '1970-01-01T00:00:00.000000Z' WHERE EXISTS (SELECT 1 FROM weekly_periods);
    INSERT INTO weekly_history (changed_at, weekday, start, end, mode)
        SELECT '1970-01-01T00:00:00.000000Z', weekday, start, end, mode FROM weekly_periods;
    """,
    # 9: events the central service refused as malformed are set aside, with its
    # reason, so one bad event cannot hold up the branch's outbox forever.
    """
    CREATE TABLE events_quarantined (
        seq INTEGER PRIMARY KEY,
        error TEXT NOT NULL,
        at TEXT NOT NULL
    );
    """,
    # 10: the login throttle counts failures per username typed (its SHA-256) as well as per address.
    """
    ALTER TABLE login_failures ADD COLUMN username_hash TEXT NOT NULL DEFAULT '';
    CREATE INDEX login_failures_username ON login_failures (username_hash, ts);
    """,
    # 11: the tap-time SIP2 check. class_refused: the library system's patron class
    # keeps the card out of self-service (not the terms). sip2_pin_verifiers: a
    # peppered verifier of a PIN the library system accepted, for its outages;
    # a table of its own, so that a snapshot from the central service keeps it.
    """
    ALTER TABLE patrons ADD COLUMN class_refused INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE sip2_pin_verifiers (
        card_key TEXT PRIMARY KEY,
        verifier TEXT NOT NULL,
        verified_at TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
]

COMMAND_ACTIONS = ("pulse", "hold", "lockdown", "release", "clear_pin_lockout")
#: The one command that is about a card rather than a door, and so needs the card's key.
CARD_COMMANDS = ("clear_pin_lockout",)

#: The outbox: events the central service has not accepted and has not refused.
_UNPUSHED = (
    "seq > (SELECT coalesce(max(pushed_upto), 0) FROM sync_state WHERE stream = 'events')"
    " AND seq NOT IN (SELECT seq FROM events_quarantined)"
)
_SYNC_COLUMNS = ("stream", "cursor", "pushed_upto", "last_attempt", "last_success", "last_error", "last_error_at", "last_snapshot")
#: "Leave the cursor as it is", as opposed to None, which clears it.
_KEEP = object()
#: Rows written or deleted per transaction when a snapshot is staged, or when a
#: replaced patron cache or a snapshot cut short is cleared away: each such
#: transaction holds the write lock that a tap's event waits for, so it is kept
#: to a few milliseconds (benchmark P3).
_STAGE_SLICE = 1_000
_RETIRE_SLICE = 2_000
#: The page cache of a connection's temporary tables while it stages a patron CSV
#: import (SQLite's default is 2 MB): random inserts into 800,000 rows stay quick.
_IMPORT_CACHE_KB = 16 * 1024
#: The pause after each such transaction, in which a waiting tap takes the lock.
_SLICE_PAUSE_SECONDS = 0.001
#: How often a tap's write that finds the lock taken tries again. SQLite's own busy
#: handler sleeps longer and longer (up to 25 ms at a time) and can keep losing to
#: a sync that writes slice after slice; a tap cannot wait that long (benchmark P3).
_LOCK_RETRY_SECONDS = 0.0005
_PATRONS_TABLE = re.compile(r'^CREATE TABLE\s+"?patrons"?', re.IGNORECASE)
_PATRON_COLUMNS = "card_key, self_service, blocked_reason, valid_until, age_ok_from, staff, fetched_at, source, pin_verifier"
_PATRON_INSERT = f"({_PATRON_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
#: Settings keys the staff page edits and the device follows.
ANNOUNCEMENTS_KEY = "announcements"
#: When this database was first opened (an hour, as the counters write it): with the
#: earliest counter, where the branch's statistics begin (see first_counted_hour).
INSTALLED_KEY = "installed_at"
_RESERVATION_INSERT = "INSERT OR REPLACE INTO reservations (id, resource, card_key, begin, end, state) VALUES (?, ?, ?, ?, ?, ?)"



@dataclass(frozen=True)
class Command:
    id: int
    door: str
    action: str
    until: datetime | None
    requested_by: str
    card_key: str | None = None


def _now() -> datetime:
    return datetime.now(timezone.utc)


class _Connection(sqlite3.Connection):
    """A connection whose ``with`` blocks nest: only the outermost one commits, or rolls back.

    Every write method here is its own ``with self.conn:`` block. A staff action
    wraps its change and its audit entry in one more block, so that both reach the
    database or neither does: a plain sqlite3 connection would commit at the end
    of the inner block and leave the change without its entry if the process died
    in between. An exception that leaves the outer block undoes the inner blocks too.
    """

    depth = 0

    def __enter__(self):
        self.depth += 1
        return super().__enter__() if self.depth == 1 else self

    def __exit__(self, kind, value, traceback):
        self.depth -= 1
        return super().__exit__(kind, value, traceback) if self.depth == 0 else False


class Store:
    def __init__(self, path: str | Path, *, durable: bool = False, busy_timeout_ms: int = 5000, migrate: bool = True):
        """Open (creating if needed) and migrate the database.

        ``durable`` makes every commit reach the disk before it returns
        (``synchronous=FULL``): the device uses it so that a decision survives a
        power cut that happens right after the door opened. ``migrate=False`` is
        for the web's per-thread connections, opened after the app has migrated
        once: migrating takes the write lock, which the door should not wait for.
        """
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._schedules: dict[ZoneInfo, tuple[int, Schedule]] = {}
        self._histories: dict[ZoneInfo, tuple[int, HoursHistory]] = {}
        self._period_totals: dict[str, tuple[int, list]] = {}
        conn = sqlite3.connect(
            str(self.path), timeout=busy_timeout_ms / 1000, check_same_thread=False, factory=_Connection
        )
        self._use(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        conn.execute("PRAGMA foreign_keys=ON")
        if migrate:
            self.migrate()

    @classmethod
    def read_only(cls, path: str | Path) -> Store:
        """The database opened for reading only, for a device that cannot write it.

        Every write raises sqlite3.OperationalError, which the device already treats
        as a failing disk. On a read-only file system SQLite cannot make the WAL
        index it wants for a WAL database, so a file that cannot be read that way is
        opened as immutable: what a clean stop checkpointed into the main file.
        Raises sqlite3.Error when it cannot be read at all.
        """
        store = cls.__new__(cls)
        store.path = Path(path)
        store._busy_timeout_ms = 5000
        store._schedules, store._period_totals = {}, {}
        uri = store.path.resolve().as_uri()
        try:
            conn = _readable(f"{uri}?mode=ro")
        except sqlite3.Error:
            conn = _readable(f"{uri}?mode=ro&immutable=1")
        store._use(conn)
        conn.execute("PRAGMA query_only=ON")
        return store

    @classmethod
    def in_memory(cls, staff_keys: frozenset[str]) -> Store:
        """An empty database in memory holding only these staff cards, which refuses
        writes like a read-only one: for a device that cannot read its database."""
        store = _StaffCardsOnly(":memory:")
        for key in staff_keys:
            store.add_staff_card(key, "", "staff card copy")
        store.conn.execute("PRAGMA query_only=ON")
        return store

    def _use(self, conn: sqlite3.Connection) -> None:
        self.db = sqlite_utils.Database(conn)
        self.conn = conn

    def close(self) -> None:
        self.conn.close()

    def lock_for_writing(self) -> None:
        """Take the write lock now, inside a ``with self.conn:`` block, until the block ends.

        For a write that depends on what the block read first: without it the reads
        run before the transaction begins (at its first write), and another process
        may change what was read in between. A block that has written holds the lock already.
        """
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")

    # -- schema ---------------------------------------------------------------
    @property
    def version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> None:
        """Apply the migrations this file has not seen yet, each in its own transaction."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            current = self.version
            for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in _statements(script):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number}")
            # Python's clock, not SQLite's: tests move the one they control.
            self.conn.execute(
                "INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (INSTALLED_KEY, hour_text(_now()))
            )

    # -- events and counts ----------------------------------------------------
    def record(self, events: Iterable[Event]) -> None:
        """Write events and their counts in one transaction: all of them or none."""
        with self.conn:
            self._begin_promptly()
            self._insert_events(events)

    def _begin_promptly(self) -> None:
        """Take the write lock, trying again every half millisecond up to the busy timeout."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        self.conn.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    self.conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if not str(exc).startswith("database is locked") or time.monotonic() > deadline:
                        raise
                time.sleep(_LOCK_RETRY_SECONDS)
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")

    def _insert_events(self, events: Iterable[Event]) -> None:
        """An event already stored (a retry after a commit that reported an error but
        had happened) is skipped and not counted again, so a retry never wedges."""
        for event in events:
            inserted = self.conn.execute(
                "INSERT INTO events (uuid, ts, door, type, reason, mode, card_key, detail)"
                " VALUES (:uuid, :ts, :door, :type, :reason, :mode, :card_key, :detail)"
                " ON CONFLICT (uuid) DO NOTHING",
                event.row(),
            ).rowcount
            if not inserted:
                continue
            hour = hour_text(event.ts)
            for metric, amount in event.metrics().items():
                self.conn.execute(
                    "INSERT INTO hourly_counts (hour, door, metric, count) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (hour, door, metric) DO UPDATE SET count = count + excluded.count",
                    (hour, event.door, metric, amount),
                )

    def add_count(self, moment: datetime, door: str, metric: str, amount: int = 1) -> None:
        """Add to one hourly counter with no event: for happenings too frequent and too
        plain to log one by one, such as a people counter's pulses."""
        with self.conn:
            self.conn.execute(
                "INSERT INTO hourly_counts (hour, door, metric, count) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (hour, door, metric) DO UPDATE SET count = count + excluded.count",
                (hour_text(moment), door, metric, amount),
            )

    def first_counted_hour(self) -> datetime:
        """Where the branch's statistics begin: the database's first opening, or its
        earliest counter if that is older (counters imported or restored from before).

        Open hours before it are not counted: the doors were not run by omaovi then.
        """
        earliest = self.conn.execute("SELECT min(hour) FROM hourly_counts").fetchone()[0]
        known = [text for text in (self._setting(INSTALLED_KEY), earliest) if text]
        return datetime.strptime(min(known), HOUR_FORMAT).replace(tzinfo=timezone.utc) if known else _now()

    def events(self, since: datetime | None = None, limit: int = 100) -> list[dict]:
        """Newest first."""
        sql = "SELECT * FROM events"
        params: list = []
        if since is not None:
            sql += " WHERE ts >= ?"
            params.append(utc_text(since))
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        return [dict(row) for row in self.db.query(sql, params)]

    def find_events(
        self, *, door: str | None = None, type: str | None = None, reason: str | None = None, card_key: str | None = None,
        start: datetime | None = None, end: datetime | None = None, before_seq: int | None = None, limit: int = 50,
    ) -> list[dict]:
        """Events matching every filter given, newest first, for a page of the log.

        Paged by ``seq`` (pass the last row's seq as ``before_seq``), not by
        offset, so that taps arriving while staff read do not shift the pages.
        """
        filters = {"door = ?": door, "type = ?": type, "reason = ?": reason, "card_key = ?": card_key,
                   "ts >= ?": utc_text(start) if start else None, "ts < ?": utc_text(end) if end else None,
                   "seq < ?": before_seq}
        used = {clause: value for clause, value in filters.items() if value is not None}
        where = " WHERE " + " AND ".join(used) if used else ""
        return [dict(row) for row in self.db.query(f"SELECT * FROM events{where} ORDER BY seq DESC LIMIT ?", [*used.values(), limit])]

    def counts(self, start: datetime, end: datetime) -> list[dict]:
        """Hourly counter rows with start <= hour < end."""
        return list(
            self.db.query(
                "SELECT hour, door, metric, count FROM hourly_counts WHERE hour >= ? AND hour < ? ORDER BY hour",
                [hour_text(start), hour_text(end)],
            )
        )

    def count_totals(self) -> list[dict]:
        """Every counter summed over all hours, per door: the ever-growing totals /metrics exports."""
        return list(
            self.db.query("SELECT door, metric, sum(count) AS count FROM hourly_counts GROUP BY door, metric ORDER BY door, metric")
        )

    def period_totals(self, periods: Iterable[tuple[str, datetime, datetime]]) -> list[tuple[str, str, int]]:
        """(period, metric, count) for each named period (name, start, end), summed
        over the doors and the hours with start <= hour < end.

        The periods go to SQLite as one JSON list and are summed there: a month of
        statistics reads some 3,500 counter rows, and handing each to Python to be
        put in its period took half of an /api/v1/stats request (benchmark P6);
        a year's 40,000 took most of benchmark P5. The sums are then kept until
        ``counts_revision`` changes: summing a month still took 1.2 ms of the
        request's 2.2, and the same months are asked for again and again (the
        Today page's day, the Statistics page, the central office's pulls).
        """
        spans = json.dumps([(name, hour_text(start), hour_text(end)) for name, start, end in periods])
        revision = self.counts_revision()  # before the sums: a change in between only sums them again next time
        cached = self._period_totals.get(spans)
        if cached is None or cached[0] != revision:
            if len(self._period_totals) >= _PERIOD_TOTALS_KEPT:
                self._period_totals.clear()
            cached = self._period_totals[spans] = (revision, self.conn.execute(
                "WITH p (period, start, end) AS MATERIALIZED (SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?))"
                " SELECT p.period, h.metric, sum(h.count) FROM p JOIN hourly_counts h ON h.hour >= p.start AND h.hour < p.end"
                " GROUP BY p.period, h.metric",
                (spans,),
            ).fetchall())
        return cached[1]

    def counts_revision(self) -> int:
        """Goes up with every change of the hourly counters (a trigger of migration 7)."""
        return self._revision("counts_revision")

    def _revision(self, key: str) -> int:
        value = self._setting(key)
        return int(value) if value else 0

    def _setting(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def purge_events(self, older_than: datetime) -> int:
        """Delete raw events past retention. Their counts are already in hourly_counts."""
        with self.conn:
            return self.conn.execute("DELETE FROM events WHERE ts < ?", (utc_text(older_than),)).rowcount

    # -- patrons --------------------------------------------------------------
    def patron(self, card_key: str, today: date | None = None) -> Patron | None:
        """The cache entry merged with this branch's own staff cards and blocks."""
        today = today or _now().date()
        cached = self.db.execute(
            "SELECT self_service, blocked_reason, valid_until, age_ok_from, staff, fetched_at, source, pin_verifier,"
            " class_refused FROM patrons WHERE card_key = ?",
            [card_key],
        ).fetchone()
        local_staff = self.db.execute("SELECT 1 FROM staff_cards WHERE card_key = ?", [card_key]).fetchone() is not None
        block = self.db.execute(
            "SELECT note FROM local_blocks WHERE card_key = ? AND (until IS NULL OR until >= ?)",
            [card_key, today.isoformat()],
        ).fetchone()
        if cached is None and not local_staff and block is None:
            return None
        local = {"local_staff": local_staff, "local_block": (block[0] or "local block") if block else None}
        if cached is None:
            return Patron(card_key=card_key, **local)
        self_service, blocked_reason, valid_until, age_ok_from, staff, fetched_at, source, pin_verifier, refused = cached
        return Patron(
            card_key=card_key,
            self_service=bool(self_service),
            blocked_reason=blocked_reason,
            valid_until=date.fromisoformat(valid_until) if valid_until else None,
            age_ok_from=date.fromisoformat(age_ok_from) if age_ok_from else None,
            staff=bool(staff),
            fetched_at=self._confirmed_at(parse_utc(fetched_at), source),
            pin_verifier=pin_verifier,
            class_refused=bool(refused),
            **local,
        )

    def _confirmed_at(self, fetched_at: datetime, source: str) -> datetime:
        """When this entry was last known to be right.

        Delta sync rewrites only the cards that changed, so an unchanged card from
        the central service is as fresh as the last successful patrons round, not
        as old as its last change; without this every unchanged card would stop
        opening the door after max_offline_age.
        """
        if source != "central":
            return fetched_at
        row = self.conn.execute("SELECT last_success FROM sync_state WHERE stream = 'patrons'").fetchone()
        # A central entry is written in the same transaction as a successful round,
        # so the latest round came after every entry, even when the clock has been
        # stepped back since and the entry's own fetched_at lies in the future.
        return parse_utc(row[0]) if row and row[0] else fetched_at

    def put_patrons(self, patrons: Iterable[Patron], *, source: str, replace: bool = False) -> int:
        """Insert or update cache entries; with ``replace`` the whole cache is swapped atomically."""
        rows = [_patron_row(p, source) for p in patrons]
        with self.conn:
            if replace:
                self.conn.execute("DELETE FROM patrons")
            self.conn.executemany(f"INSERT OR REPLACE INTO patrons {_PATRON_INSERT}", rows)
        return len(rows)

    def refresh_patron(
        self,
        card_key: str,
        *,
        self_service: bool,
        blocked_reason: str | None,
        valid_until: date | None,
        fetched_at: datetime,
        source: str,
        class_refused: bool = False,
    ) -> None:
        """Overwrite a cache entry's permissions with a fresh answer, keeping what the answer lacks.

        For the tap-time SIP2 check: the library system says nothing about age or
        staff, so ``age_ok_from`` and ``staff`` stay as the central service or the
        CSV set them (a new entry has neither). One statement, so a sync writing
        the same card at the same moment cannot interleave with it.
        """
        with self.conn:
            self.conn.execute(
                "INSERT INTO patrons (card_key, self_service, blocked_reason, valid_until, age_ok_from, staff, fetched_at,"
                " source, class_refused) VALUES (?, ?, ?, ?, NULL, 0, ?, ?, ?)"
                " ON CONFLICT (card_key) DO UPDATE SET self_service = excluded.self_service,"
                " blocked_reason = excluded.blocked_reason, valid_until = excluded.valid_until,"
                " fetched_at = excluded.fetched_at, source = excluded.source, class_refused = excluded.class_refused",
                (
                    card_key, int(self_service), blocked_reason, valid_until.isoformat() if valid_until else None,
                    utc_text(fetched_at), source, int(class_refused),
                ),
            )

    def keep_sip2_pin_verifier(self, card_key: str, verifier: str, verified_at: datetime) -> None:
        """The verifier of a PIN the library system accepted, for its outages (``device.pins.remember_pin``)."""
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO sip2_pin_verifiers (card_key, verifier, verified_at) VALUES (?, ?, ?)",
                (card_key, verifier, utc_text(verified_at)),
            )

    def forget_sip2_pin_verifier(self, card_key: str) -> None:
        """The library system said the PIN is wrong: the one kept for the card is no longer its PIN."""
        with self.conn:
            self.conn.execute("DELETE FROM sip2_pin_verifiers WHERE card_key = ?", (card_key,))

    def sip2_pin_verifier(self, card_key: str, since: datetime) -> str | None:
        """The card's kept verifier if the library system accepted it at ``since`` or later."""
        row = self.db.execute(
            "SELECT verifier, verified_at FROM sip2_pin_verifiers WHERE card_key = ?", [card_key]
        ).fetchone()
        return row[0] if row and parse_utc(row[1]) >= since else None

    def add_staff_card(self, card_key: str, note: str, added_by: str) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO staff_cards (card_key, note, added_by, added_at) VALUES (?, ?, ?, ?)",
                (card_key, note, added_by, utc_text(_now())),
            )

    def add_local_block(self, card_key: str, note: str, added_by: str, until: date | None = None) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO local_blocks (card_key, until, note, added_by, added_at) VALUES (?, ?, ?, ?, ?)",
                (card_key, until.isoformat() if until else None, note, added_by, utc_text(_now())),
            )

    def staff_cards(self) -> list[dict]:
        """This branch's own staff cards, newest first, ``added_at`` as an aware datetime."""
        return [
            dict(row) | {"added_at": parse_utc(row["added_at"])}
            for row in self.db.query("SELECT card_key, note, added_by, added_at FROM staff_cards ORDER BY added_at DESC")
        ]

    def remove_staff_card(self, card_key: str) -> bool:
        """False when the card was not a staff card (already removed in another tab, say)."""
        with self.conn:
            return self.conn.execute("DELETE FROM staff_cards WHERE card_key = ?", (card_key,)).rowcount > 0

    def local_blocks(self) -> list[dict]:
        """Every local block, expired ones too, newest first; ``until`` is the last blocked day or None."""
        return [
            dict(row) | {"until": date.fromisoformat(row["until"]) if row["until"] else None, "added_at": parse_utc(row["added_at"])}
            for row in self.db.query("SELECT card_key, until, note, added_by, added_at FROM local_blocks ORDER BY added_at DESC")
        ]

    def remove_local_block(self, card_key: str) -> bool:
        with self.conn:
            return self.conn.execute("DELETE FROM local_blocks WHERE card_key = ?", (card_key,)).rowcount > 0

    # -- reservations ---------------------------------------------------------
    def put_reservations(self, reservations: Iterable[Reservation]) -> None:
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO reservations (id, resource, card_key, begin, end, state) VALUES (?, ?, ?, ?, ?, ?)",
                [(r.id, r.resource, r.card_key, utc_text(r.begin), utc_text(r.end), r.state) for r in reservations],
            )

    def reservations_for(self, card_key: str, resource: str, now: datetime) -> list[Reservation]:
        """The card's reservations of one resource that have not ended yet."""
        return [
            _reservation(row)
            for row in self.db.query(
                "SELECT * FROM reservations WHERE card_key = ? AND resource = ? AND end > ? ORDER BY begin",
                [card_key, resource, utc_text(now)],
            )
        ]

    def reservations_between(self, resource: str, start: datetime, end: datetime) -> list[Reservation]:
        return [
            _reservation(row)
            for row in self.db.query(
                "SELECT * FROM reservations WHERE resource = ? AND end > ? AND begin < ? AND state != 'cancelled' ORDER BY begin",
                [resource, utc_text(start), utc_text(end)],
            )
        ]

    def no_shows(self, resource: str, door: str, begun_before: datetime, now: datetime) -> list[Reservation]:
        """Confirmed, still running reservations of a booth that began before ``begun_before``
        with no granted tap at ``door`` and no no-show logged yet."""
        return [
            _reservation(row)
            for row in self.db.query(
                "SELECT r.* FROM reservations r WHERE r.resource = :resource AND r.state = 'confirmed'"
                " AND r.begin <= :begun_before AND r.end > :now"
                " AND NOT EXISTS (SELECT 1 FROM events e WHERE e.door = :door AND e.ts >= :since"
                "   AND json_extract(e.detail, '$.reservation') = r.id"
                "   AND ((e.type = 'tap' AND e.reason = 'granted') OR e.type = 'reservation_no_show'))"
                " ORDER BY r.begin",
                {"resource": resource, "door": door, "begun_before": utc_text(begun_before), "now": utc_text(now),
                 # Taps are looked for from a day before: early entry is at most an hour.
                 "since": utc_text(begun_before - timedelta(days=1))},
            )
        ]

    def reservation_used(self, door: str, reservation_id: str, since: datetime) -> bool:
        """Whether a granted tap at ``door`` since ``since`` already used this reservation."""
        return self.conn.execute(
            "SELECT 1 FROM events WHERE door = ? AND ts >= ? AND type = 'tap' AND reason = 'granted'"
            " AND json_extract(detail, '$.reservation') = ? LIMIT 1",
            (door, utc_text(since), reservation_id),
        ).fetchone() is not None

    # -- hours ----------------------------------------------------------------
    def schedule(self, tz: ZoneInfo) -> Schedule:
        """The hours as stored, read from their tables again only after they changed.

        Every Today page and statistics request asks for them, the Today page
        twice; ``hours_revision`` is one row to read (benchmark P6), and a
        Schedule never changes once made.
        """
        revision = self.hours_revision()  # before the tables: a change in between only reads them again next time
        cached = self._schedules.get(tz)
        if cached is None or cached[0] != revision:
            cached = self._schedules[tz] = (revision, self._read_schedule(tz))
        return cached[1]

    def hours_history(self, tz: ZoneInfo) -> HoursHistory:
        """Every version of the weekly hours with the local day it took effect, and the
        dated exceptions: the hours each past day had, for the statistics."""
        revision = self.hours_revision()
        cached = self._histories.get(tz)
        if cached is None or cached[0] != revision:
            exceptions = self._read_exceptions()
            versions: dict[str, dict[int, list[Period]]] = {
                row[0]: {} for row in self.conn.execute("SELECT changed_at FROM weekly_versions ORDER BY changed_at")
            }
            for row in self.db.query("SELECT changed_at, weekday, start, end, mode FROM weekly_history ORDER BY weekday, start"):
                versions[row["changed_at"]].setdefault(row["weekday"], []).append(Period(row["start"], row["end"], row["mode"]))
            history = HoursHistory(tuple(
                (parse_utc(changed_at).astimezone(tz).date(), Schedule({k: tuple(v) for k, v in weekly.items()}, exceptions, tz))
                for changed_at, weekly in versions.items()
            ) or ((date.min, Schedule({}, exceptions, tz)),))
            cached = self._histories[tz] = (revision, history)
        return cached[1]

    def _read_schedule(self, tz: ZoneInfo) -> Schedule:
        weekly: dict[int, list[Period]] = {}
        for row in self.db.query("SELECT weekday, start, end, mode FROM weekly_periods ORDER BY weekday, start"):
            weekly.setdefault(row["weekday"], []).append(Period(row["start"], row["end"], row["mode"]))
        return Schedule(weekly={k: tuple(v) for k, v in weekly.items()}, exceptions=self._read_exceptions(), tz=tz)

    def _read_exceptions(self) -> dict[date, tuple[Period, ...]]:
        exceptions: dict[date, list[Period]] = {date.fromisoformat(r["date"]): [] for r in self.db.query("SELECT date FROM exception_days")}
        for row in self.db.query("SELECT date, start, end, mode FROM exception_periods ORDER BY date, start"):
            exceptions[date.fromisoformat(row["date"])].append(Period(row["start"], row["end"], row["mode"]))
        return {k: tuple(v) for k, v in exceptions.items()}

    def hours_revision(self) -> int:
        """Goes up with every change of the hours, so the device reloads them only then."""
        return self._revision("hours_revision")

    def _bump_hours_revision(self) -> None:
        self.conn.execute(
            "INSERT INTO settings (key, value) VALUES ('hours_revision', '1')"
            " ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    def set_weekly(self, weekly: dict[int, Iterable[Period]], *, at: datetime | None = None) -> None:
        """Replace the whole weekly pattern, in force from ``at`` (now) on.

        A pattern that differs from the last one is also kept as a new version
        in the history (see hours_history), so the past keeps its hours.
        """
        rows = sorted((day, p.start, p.end, p.mode) for day, periods in weekly.items() for p in periods)
        with self.conn:
            self.lock_for_writing()
            self.conn.execute("DELETE FROM weekly_periods")
            self.conn.executemany("INSERT INTO weekly_periods (weekday, start, end, mode) VALUES (?, ?, ?, ?)", rows)
            latest = self.conn.execute("SELECT max(changed_at) FROM weekly_versions").fetchone()[0]
            before = self.conn.execute(
                "SELECT weekday, start, end, mode FROM weekly_history WHERE changed_at = ? ORDER BY weekday, start", (latest,)
            ).fetchall()
            if latest is None or before != rows:
                changed_at = utc_text(at or _now())
                self.conn.execute("DELETE FROM weekly_versions WHERE changed_at = ?", (changed_at,))
                self.conn.execute("INSERT INTO weekly_versions (changed_at) VALUES (?)", (changed_at,))
                self.conn.executemany(
                    "INSERT INTO weekly_history (changed_at, weekday, start, end, mode) VALUES (?, ?, ?, ?, ?)",
                    [(changed_at, *row) for row in rows],
                )
            self._bump_hours_revision()

    def set_exceptions(
        self, days: dict[date, Iterable[Period]], *, note: str = "", notes: dict[date, str] | None = None, source: str = "local"
    ) -> None:
        """Set dated exceptions; each given date's periods replace what that date had.

        A day's own entry in ``notes`` (a holiday's name from Kirkanta) wins over ``note``.
        """
        notes = notes or {}
        with self.conn:
            for day, periods in days.items():
                self.conn.execute("DELETE FROM exception_days WHERE date = ?", (day.isoformat(),))
                self.conn.execute(
                    "INSERT INTO exception_days (date, note, source) VALUES (?, ?, ?)",
                    (day.isoformat(), notes.get(day) or note, source),
                )
                self.conn.executemany(
                    "INSERT INTO exception_periods (date, start, end, mode) VALUES (?, ?, ?, ?)",
                    [(day.isoformat(), p.start, p.end, p.mode) for p in periods],
                )
            self._bump_hours_revision()

    def exception_days(self, start: date | None = None, end: date | None = None) -> list[dict]:
        """Dated exceptions from ``start`` to ``end`` (both included), by date.

        Each is ``{"date", "note", "source", "periods"}``: the staff page shows
        where a day's hours came from (local, kirkanta, central) before anyone
        edits it, because a later import may overwrite it.
        """
        first = start.isoformat() if start else "0000-01-01"
        last = end.isoformat() if end else "9999-12-31"
        days = {
            row["date"]: {"date": date.fromisoformat(row["date"]), "note": row["note"], "source": row["source"], "periods": []}
            for row in self.db.query(
                "SELECT date, note, source FROM exception_days WHERE date BETWEEN ? AND ? ORDER BY date", [first, last]
            )
        }
        for row in self.db.query(
            "SELECT date, start, end, mode FROM exception_periods WHERE date BETWEEN ? AND ? ORDER BY date, start", [first, last]
        ):
            days[row["date"]]["periods"].append(Period(row["start"], row["end"], row["mode"]))
        return [day | {"periods": tuple(day["periods"])} for day in days.values()]

    def delete_exception(self, day: date) -> bool:
        """Remove a date's exception, so the weekly pattern applies again; False if it had none."""
        with self.conn:
            deleted = self.conn.execute("DELETE FROM exception_days WHERE date = ?", (day.isoformat(),)).rowcount
            if deleted:
                self._bump_hours_revision()
        return bool(deleted)

    # -- commands from the staff page -----------------------------------------
    def add_command(
        self, door: str, action: str, requested_by: str, until: datetime | None = None, card_key: str | None = None
    ) -> int:
        """``card_key``: the card a card command is about (and only such a command has one)."""
        if action not in COMMAND_ACTIONS:
            raise ValueError(f"unknown command {action!r}; allowed: {', '.join(COMMAND_ACTIONS)}")
        if (action in CARD_COMMANDS) != (card_key is not None):
            raise ValueError(f"a {action!r} command {'needs' if action in CARD_COMMANDS else 'takes no'} card key")
        with self.conn:
            return self.conn.execute(
                "INSERT INTO commands (door, action, until, requested_by, requested_at, card_key) VALUES (?, ?, ?, ?, ?, ?)",
                (door, action, utc_text(until) if until else None, requested_by, utc_text(_now()), card_key),
            ).lastrowid

    def pending_commands(self) -> list[Command]:
        return [_command(r) for r in self.db.query("SELECT * FROM commands WHERE done_at IS NULL ORDER BY id")]

    def standing_commands(self) -> list[Command]:
        """The lockdowns and holds carried out since each door's last release, oldest first.

        A door keeps them only in memory, so the device takes them up again when it
        starts: a power cut must not end a lockdown, nor a hold before its time.
        """
        return [
            _command(r)
            for r in self.db.query(
                "WITH released AS (SELECT door, max(id) AS id FROM commands WHERE action = 'release' AND result = 'done' GROUP BY door)"
                " SELECT c.* FROM commands c LEFT JOIN released r ON r.door = c.door"
                " WHERE c.result = 'done' AND c.action IN ('lockdown', 'hold') AND c.id > coalesce(r.id, 0) ORDER BY c.id"
            )
        ]

    def finish_command(self, command_id: int, result: str, event: Event | None = None) -> None:
        """Mark a command done and write the event that logs it, in one transaction."""
        with self.conn:
            self.conn.execute(
                "UPDATE commands SET done_at = ?, result = ? WHERE id = ?", (utc_text(_now()), result, command_id)
            )
            if event is not None:
                self._insert_events([event])

    # -- central service sync -------------------------------------------------
    def sync_state(self, stream: str) -> dict | None:
        """Where one stream stands: cursor, pushed_upto, last attempt, success and error."""
        row = self.conn.execute("SELECT * FROM sync_state WHERE stream = ?", (stream,)).fetchone()
        return dict(zip(_SYNC_COLUMNS, row)) if row else None

    def patrons_complete_at(self) -> datetime | None:
        """When the patron cache was last known to hold every card: the last successful
        round of the central patrons stream after a full snapshot. None without one."""
        row = self.conn.execute(
            "SELECT last_success FROM sync_state WHERE stream = 'patrons' AND last_snapshot IS NOT NULL"
        ).fetchone()
        return parse_utc(row[0]) if row and row[0] else None

    def sync_states(self) -> dict[str, dict]:
        """Every stream's state, for the staff page and ``omaovi sync`` to show."""
        return {row[0]: dict(zip(_SYNC_COLUMNS, row)) for row in self.conn.execute("SELECT * FROM sync_state ORDER BY stream")}

    def note_sync_success(self, stream: str, at: datetime) -> None:
        """A stream finished a round; its last error is cleared so the staff page shows it healthy."""
        with self.conn:
            self._sync_success(stream, at)

    def note_sync_error(self, stream: str, error: str, at: datetime) -> None:
        """A stream's round failed; the cursor and the data stay as they were."""
        with self.conn:
            self._ensure_sync_row(stream)
            self.conn.execute(
                "UPDATE sync_state SET last_attempt = ?, last_error = ?, last_error_at = ? WHERE stream = ?",
                (utc_text(at), error, utc_text(at), stream),
            )

    def forget_sync_cursor(self, stream: str) -> None:
        """The central service no longer knows the cursor (410 Gone): the next round starts a snapshot."""
        with self.conn:
            self._ensure_sync_row(stream)
            self.conn.execute("UPDATE sync_state SET cursor = NULL WHERE stream = ?", (stream,))

    def begin_patron_snapshot(self) -> None:
        """Start an empty staging table that a full snapshot is written into page by page.

        The staging table is built from the live table's own definition, so the two
        can never drift apart, and it is invisible to ``patron()`` until the swap.
        Whatever an earlier snapshot cut short left is cleared away first.
        """
        self.discard_patron_snapshot()
        self._create_staging("patrons_staging")

    def _create_staging(self, name: str) -> None:
        """An empty table made from the live patron table's own definition."""
        with self.conn:
            ddl = self.conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'patrons'").fetchone()[0]
            self.conn.execute(_PATRONS_TABLE.sub(f"CREATE TABLE {name}", ddl, count=1))

    def stage_patrons(self, patrons: Iterable[Patron], *, source: str) -> int:
        """Add one page of a snapshot to the staging table, in short transactions of its own.

        The staging table is invisible until the swap, so a page need not be
        written whole: a crash mid-page only means the snapshot starts over.
        """
        rows = [_patron_row(p, source) for p in patrons]
        for start in range(0, len(rows), _STAGE_SLICE):
            with self.conn:
                self.conn.executemany(
                    f"INSERT OR REPLACE INTO patrons_staging {_PATRON_INSERT}", rows[start:start + _STAGE_SLICE]
                )
            time.sleep(_SLICE_PAUSE_SECONDS)
        return len(rows)

    def commit_patron_snapshot(self, *, stream: str, cursor: str | None, at: datetime) -> int:
        """Swap the staged snapshot in as the patron cache, together with the stream's new cursor.

        Renaming tables is the whole swap, so the write lock is held for milliseconds
        even for a million cards: the door never waits, and a reader sees either the
        old cache or the new one, never a mix. The old table is cleared away
        afterwards in short transactions of its own.
        """
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            count = self._swap_in("patrons_staging", "patrons_retired")
            self._sync_success(stream, at, cursor)
            self.conn.execute("UPDATE sync_state SET last_snapshot = ? WHERE stream = ?", (utc_text(at), stream))
        self._clear_away("patrons_retired")
        return count

    def _swap_in(self, staging: str, retired: str) -> int:
        count = self.conn.execute(f"SELECT count(*) FROM {staging}").fetchone()[0]
        self.conn.execute(f"ALTER TABLE patrons RENAME TO {retired}")
        self.conn.execute(f"ALTER TABLE {staging} RENAME TO patrons")
        return count

    def discard_patron_snapshot(self) -> int:
        """Throw away what a snapshot left behind; returns the rows removed.

        That is a staging table never swapped in (a snapshot that failed, or was
        cut by a kill or a power cut), or a replaced cache not yet cleared away
        (a cut just after the swap). ``patron()`` reads neither, so the doors
        never noticed them. Their pages go to the database's free list, which the
        next snapshot fills first: the file does not shrink, but a cut snapshot
        never makes it grow by more than one snapshot.
        """
        leftovers = [name for (name,) in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('patrons_staging', 'patrons_retired')"
        )]
        return sum(self._clear_away(table) for table in leftovers)

    def _clear_away(self, table: str) -> int:
        """Empty one of the snapshot's own tables in slices, then drop it; returns the rows removed.

        Dropping a million rows at once would hold the write lock long enough on
        an SD card to make the door wait to log a tap.
        """
        removed = 0
        while True:
            with self.conn:
                deleted = self.conn.execute(
                    f"DELETE FROM {table} WHERE card_key IN (SELECT card_key FROM {table} LIMIT ?)", (_RETIRE_SLICE,)
                ).rowcount
            if not deleted:
                break
            removed += deleted
            time.sleep(_SLICE_PAUSE_SECONDS)
        with self.conn:
            self.conn.execute(f"DROP TABLE {table}")
        return removed

    # A patron CSV import (sync/patrons_csv.py) is staged in a temporary table of its
    # own connection: writing it takes no lock the door waits for and nothing goes
    # to the WAL, and the table is gone with the connection whatever happens. Its
    # rows come in the file's order, which for card keys (HMACs) is random; they
    # go to the database in key order, where each slice only appends.
    def begin_patron_import(self) -> None:
        """Start an empty staging table for a CSV import, with the line each card was on."""
        self.discard_patron_import()
        with self.conn:
            self.conn.execute(f"PRAGMA temp.cache_size = -{_IMPORT_CACHE_KB}")
            self.conn.execute(
                "CREATE TEMP TABLE patron_import (card_key TEXT PRIMARY KEY, line INTEGER NOT NULL, self_service INTEGER,"
                " blocked_reason TEXT, valid_until TEXT, age_ok_from TEXT, staff INTEGER, fetched_at TEXT, source TEXT,"
                " pin_verifier TEXT) WITHOUT ROWID"
            )

    def stage_patron_import(self, patrons: list[tuple[int, Patron]], *, source: str) -> dict[str, int]:
        """Stage (line, patron) pairs; returns the line each card was first staged from.

        A card twice in a file is rare, so the lines are looked up only when
        staging found a card there already; otherwise the answer is empty.
        """
        rows = [(line, *_patron_row(patron, source)) for line, patron in patrons]
        with self.conn:
            before = self.conn.total_changes
            self.conn.executemany(
                "INSERT OR IGNORE INTO temp.patron_import (line, card_key, self_service, blocked_reason, valid_until,"
                " age_ok_from, staff, fetched_at, source, pin_verifier) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows,
            )
            if self.conn.total_changes - before == len(rows):
                return {}
            first: dict[str, int] = {}
            for start in range(0, len(rows), _STAGE_SLICE):
                keys = sorted({row[1] for row in rows[start:start + _STAGE_SLICE]})
                first.update(self.conn.execute(
                    f"SELECT card_key, line FROM temp.patron_import WHERE card_key IN ({','.join('?' * len(keys))})", keys
                ).fetchall())
        return first

    def prepare_patron_import(self, *, replace: bool) -> None:
        """For ``replace``: copy the staged rows into a table made like the cache, in key
        order and short transactions, ready for ``commit_patron_import`` to rename."""
        if not replace:
            return
        self._create_staging("patrons_import")
        after = ""
        while True:
            with self.conn:
                copied = self.conn.execute(
                    f"INSERT INTO patrons_import ({_PATRON_COLUMNS}) SELECT {_PATRON_COLUMNS} FROM temp.patron_import"
                    " WHERE card_key > ? ORDER BY card_key LIMIT ? RETURNING card_key", (after, _STAGE_SLICE),
                ).fetchall()
            if not copied:
                return
            after = max(key for (key,) in copied)
            time.sleep(_SLICE_PAUSE_SECONDS)

    def commit_patron_import(self, *, replace: bool) -> int:
        """Bring the staged import in, all at once; returns how many patrons it had.

        With ``replace`` the prepared table is renamed into place (milliseconds);
        without, the staged rows are added to the cache, replacing the same cards'
        entries, in one transaction. Nests in the caller's ``with store.conn:``
        block (the staff page audits the import in the same transaction).
        Afterwards ``discard_patron_import`` clears away what is left.
        """
        with self.conn:
            self.lock_for_writing()
            if replace:
                return self._swap_in("patrons_import", "patrons_import_retired")
            return self.conn.execute(
                f"INSERT OR REPLACE INTO patrons ({_PATRON_COLUMNS}) SELECT {_PATRON_COLUMNS} FROM temp.patron_import"
                " ORDER BY card_key"
            ).rowcount

    def discard_patron_import(self) -> int:
        """Clear away an import's staging table, and a cache it replaced; returns the rows removed."""
        with self.conn:
            self.conn.execute("DROP TABLE IF EXISTS temp.patron_import")
        leftovers = [name for (name,) in self.conn.execute(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name IN ('patrons_import', 'patrons_import_retired')"
        )]
        return sum(self._clear_away(table) for table in leftovers)

    def apply_patron_changes(
        self, upserts: Iterable[Patron], deleted: Iterable[str], *, source: str, stream: str, cursor: str | None, at: datetime
    ) -> None:
        """Apply one page of changes and move the stream's cursor past it, all or nothing.

        A crash after this returns resumes after the page; a crash before it fetches
        the same page again, so no change is lost or applied against the wrong cursor.
        """
        rows = [_patron_row(p, source) for p in upserts]
        with self.conn:
            self.conn.executemany(f"INSERT OR REPLACE INTO patrons {_PATRON_INSERT}", rows)
            self.conn.executemany("DELETE FROM patrons WHERE card_key = ?", [(key,) for key in deleted])
            self._sync_success(stream, at, cursor)

    def patron_count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM patrons").fetchone()[0]

    def replace_reservations(self, reservations: Iterable[Reservation], *, stream: str, cursor: str | None, at: datetime) -> None:
        """Replace every reservation with a full snapshot and move the cursor, in one transaction."""
        rows = [_reservation_row(r) for r in reservations]
        with self.conn:
            self.conn.execute("DELETE FROM reservations")
            self.conn.executemany(_RESERVATION_INSERT, rows)
            self._sync_success(stream, at, cursor)

    def apply_reservation_changes(self, reservations: Iterable[Reservation], *, stream: str, cursor: str | None, at: datetime) -> None:
        """Insert or update one page of reservation changes and move the cursor, in one transaction."""
        rows = [_reservation_row(r) for r in reservations]
        with self.conn:
            self.conn.executemany(_RESERVATION_INSERT, rows)
            self._sync_success(stream, at, cursor)

    def events_to_push(self, limit: int) -> list[dict]:
        """The oldest events the central service has not accepted yet, in seq order, less those set aside."""
        return [
            dict(row)
            for row in self.db.query(
                f"SELECT * FROM events WHERE {_UNPUSHED} ORDER BY seq LIMIT ?",
                [limit],
            )
        ]

    def quarantine_events(self, errors: dict[int, str], at: datetime) -> None:
        """Set events (by seq) aside as the central service refused them, each with its reason; they are not sent again."""
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO events_quarantined (seq, error, at) VALUES (?, ?, ?)",
                [(seq, error, utc_text(at)) for seq, error in errors.items()],
            )

    def quarantined_events(self) -> list[dict]:
        """The events set aside, with why, newest first: for IT to look at (and for a newer version to resend)."""
        return [
            dict(row)
            for row in self.db.query(
                "SELECT events.*, q.error AS quarantine_error, q.at AS quarantined_at"
                " FROM events_quarantined AS q JOIN events USING (seq) ORDER BY seq DESC"
            )
        ]

    def mark_events_pushed(self, upto_seq: int, at: datetime) -> None:
        """Record that the central service accepted every event up to ``upto_seq``.

        Called only after a 2xx answer. The mark never moves backwards, so a late
        retry cannot make already accepted events be sent again.
        """
        with self.conn:
            self._ensure_sync_row("events")
            self.conn.execute(
                "UPDATE sync_state SET pushed_upto = max(pushed_upto, ?) WHERE stream = 'events'", (upto_seq,)
            )
            self._sync_success("events", at)

    def unpushed_event_count(self) -> int:
        return self.conn.execute(f"SELECT count(*) FROM events WHERE {_UNPUSHED}").fetchone()[0]

    def purge_pushed_events(self, older_than: datetime) -> int:
        """Delete raw events past retention, but only those the central service already has.

        This is ``purge_events`` for a branch with a central service: an event that
        has waited out a long outage in the outbox is still sent, never lost.
        """
        with self.conn:
            purged = self.conn.execute(
                "DELETE FROM events WHERE ts < ?"
                " AND seq <= (SELECT coalesce(max(pushed_upto), 0) FROM sync_state WHERE stream = 'events')",
                (utc_text(older_than),),
            ).rowcount
            self.conn.execute("DELETE FROM events_quarantined WHERE seq NOT IN (SELECT seq FROM events)")
            return purged

    def _ensure_sync_row(self, stream: str) -> None:
        self.conn.execute("INSERT OR IGNORE INTO sync_state (stream) VALUES (?)", (stream,))

    def _sync_success(self, stream: str, at: datetime, cursor: str | None | object = _KEEP) -> None:
        self._ensure_sync_row(stream)
        self.conn.execute(
            "UPDATE sync_state SET last_attempt = ?, last_success = ?, last_error = NULL, last_error_at = NULL WHERE stream = ?",
            (utc_text(at), utc_text(at), stream),
        )
        if cursor is not _KEEP:
            self.conn.execute("UPDATE sync_state SET cursor = ? WHERE stream = ?", (cursor, stream))

    # -- PINs -----------------------------------------------------------------
    def wrong_pins(self, since: datetime, card_key: str | None = None) -> dict[str, list[datetime]]:
        """When each card (or the one card) typed a wrong PIN since ``since``, from the event log.

        A tap refused because the card was already locked out is not a wrong PIN,
        and neither is one before staff last cleared the card's lockout
        (a ``pin_lockout_cleared`` event): that clearing holds across restarts.
        """
        sql = (
            "SELECT card_key, ts FROM events AS e WHERE type = 'tap' AND reason = 'wrong_pin'"
            " AND json_extract(detail, '$.pin') = 'wrong' AND ts >= ?"
            " AND NOT EXISTS (SELECT 1 FROM events AS c WHERE c.card_key = e.card_key"
            f" AND c.type = '{PIN_LOCKOUT_CLEARED}' AND c.ts >= e.ts)"
        )
        params: list = [utc_text(since)]
        if card_key is not None:
            sql += " AND e.card_key = ?"
            params.append(card_key)
        found: dict[str, list[datetime]] = {}
        for key, ts in self.conn.execute(sql, params):
            found.setdefault(key, []).append(parse_utc(ts))
        return found

    # -- settings and live status --------------------------------------------
    def announcement_settings(self) -> dict | None:
        """Announcement offsets and texts as the staff page last saved them (or the device's defaults)."""
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (ANNOUNCEMENTS_KEY,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_announcement_settings(self, value: dict, *, keep_existing: bool = False) -> None:
        """Save announcement settings; ``keep_existing`` writes them only where none are saved yet
        (the device seeding its config defaults without undoing a staff member's change)."""
        verb = "INSERT OR IGNORE" if keep_existing else "INSERT OR REPLACE"
        with self.conn:
            self.conn.execute(f"{verb} INTO settings (key, value) VALUES (?, ?)", (ANNOUNCEMENTS_KEY, json.dumps(value)))

    def set_status(self, key: str, value) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO device_status (key, value, updated_at) VALUES (?, ?, ?)",
                (key, json.dumps(value), utc_text(_now())),
            )

    def status(self) -> dict[str, dict]:
        return {
            r["key"]: {"value": json.loads(r["value"]), "updated_at": r["updated_at"]}
            for r in self.db.query("SELECT * FROM device_status")
        }


class _StaffCardsOnly(Store):
    """The stand-in for a database that could not be read at start: it knows the staff
    cards and nothing else, so any other card is answered "unavailable", not "unknown"."""

    def patron(self, card_key: str, today: date | None = None) -> Patron | None:
        raise sqlite3.OperationalError("the database could not be read at start; only the staff cards are known")


def _readable(uri: str) -> sqlite3.Connection:
    """A connection to ``uri`` that has shown it can read omaovi's tables, or sqlite3.Error."""
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False, factory=_Connection)
    try:
        conn.execute("SELECT count(*) FROM staff_cards").fetchone()
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _patron_row(p: Patron, source: str) -> tuple:
    return (
        p.card_key, int(p.self_service), p.blocked_reason,
        p.valid_until.isoformat() if p.valid_until else None,
        p.age_ok_from.isoformat() if p.age_ok_from else None,
        int(p.staff), utc_text(p.fetched_at or _now()), source, p.pin_verifier,
    )


def _command(row: dict) -> Command:
    return Command(
        row["id"], row["door"], row["action"], parse_utc(row["until"]) if row["until"] else None, row["requested_by"],
        row["card_key"],
    )


def _reservation_row(r: Reservation) -> tuple:
    return (r.id, r.resource, r.card_key, utc_text(r.begin), utc_text(r.end), r.state)


def _reservation(row: dict) -> Reservation:
    return Reservation(row["id"], row["resource"], row["card_key"], parse_utc(row["begin"]), parse_utc(row["end"]), row["state"])


#: Statistics queries whose sums a Store keeps (see period_totals).
_PERIOD_TOTALS_KEPT = 64


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements; a trigger's body keeps its own semicolons."""
    statement = ""
    for piece in script.split(";"):
        statement += piece + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \n;"):
                yield statement
            statement = ""


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants where a local day starts and ends (23, 24 or 25 hours apart)."""
    start = datetime.combine(day, datetime.min.time(), tz)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)
