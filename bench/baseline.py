"""What the tap figures are compared with: the same work done bare, at the same moments.

The least a door decision can cost on this disk is to look the card up, insert
its event and commit, with the device's own durability (WAL, ``synchronous=FULL``),
on the same database file. One bare decision is timed just before each tap, so
both see the same disk and the same neighbours: on a shared machine a commit's
fsync can take ten times as long from one minute to the next.
"""

from __future__ import annotations

import random
import sqlite3
import time
import uuid
from pathlib import Path

from bench.data import patron_keys

class BareTap:
    def __init__(self, database: Path, patrons: int):
        self._rng = random.Random(11)
        self._keys = patron_keys(min(patrons, 50_000))
        self._conn = sqlite3.connect(database, timeout=5)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        #: Seconds each bare lookup + insert + commit took.
        self.times: list[float] = []
        self._rows: list[str] = []

    def once(self) -> None:
        key = self._rng.choice(self._keys)
        row_id = str(uuid.uuid4())
        self._rows.append(row_id)
        started = time.perf_counter()
        self._conn.execute("SELECT * FROM patrons WHERE card_key = ?", (key,)).fetchone()
        self._conn.execute(
            "INSERT INTO events (uuid, ts, door, type, reason, mode, card_key)"
            " VALUES (?, ?, 'main', 'tap', 'granted', 'self_service', ?)",
            (row_id, time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()), key),
        )
        self._conn.commit()
        self.times.append(time.perf_counter() - started)

    def close(self) -> None:
        """Removes its rows, so they are not counted as taps later. A sync running meanwhile
        (P9's) may have pushed some: their uuids are real ones, so the central service takes them."""
        with self._conn:
            self._conn.executemany("DELETE FROM events WHERE uuid = ?", ((row,) for row in self._rows))
        self._conn.close()

    def __enter__(self) -> "BareTap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
