"""What the figures are compared with: the same work done bare, in the same run.

The tap baseline is the least a door decision can cost on this disk: look the card
up, insert its event and commit, with the device's own durability (WAL,
``synchronous=FULL``), on the same database file.
"""

from __future__ import annotations

import random
import sqlite3
import time
import uuid
from pathlib import Path

from bench.data import patron_keys

_PREFIX = "bench-baseline-"


def sqlite_tap(database: Path, samples: int, patrons: int) -> list[float]:
    """Seconds for each bare lookup + insert + commit; the rows are removed afterwards."""
    rng = random.Random(11)
    keys = patron_keys(min(patrons, 50_000))
    conn = sqlite3.connect(database, timeout=5)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    times = []
    try:
        for _ in range(samples):
            key = rng.choice(keys)
            row_id = _PREFIX + str(uuid.uuid4())
            started = time.perf_counter()
            conn.execute("SELECT * FROM patrons WHERE card_key = ?", (key,)).fetchone()
            conn.execute(
                "INSERT INTO events (uuid, ts, door, type, reason, mode, card_key) VALUES (?, ?, 'main', 'tap', 'granted', 'self_service', ?)",
                (row_id, time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()), key),
            )
            conn.commit()
            times.append(time.perf_counter() - started)
        with conn:
            conn.execute("DELETE FROM events WHERE uuid LIKE ?", (_PREFIX + "%",))
    finally:
        conn.close()
    return times
