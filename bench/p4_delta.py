"""P4: a sync round with 1,000 changed patrons and 500 new booth reservations."""

from __future__ import annotations

import sqlite3
import time

from bench.report import Figure
from bench.sync_runs import round_once, runner
from bench.timing import ratio, summary

CHANGED = 1000
RESERVATIONS = 500
SECONDS = 1.0


def run(ws) -> Figure:
    figure = Figure("P4", "delta sync", f"{CHANGED} patrons + {RESERVATIONS} reservations <= {SECONDS:g} s")
    database = ws.database()
    central = ws.central()
    sync = runner(ws.config_file(database, central.url))
    try:
        # Untimed: the first snapshot when P3 did not run, and the events the other figures' taps left.
        round_once(sync)
        times = []
        for _ in range(ws.scale.delta_rounds):
            central.command(f"delta {CHANGED} {RESERVATIONS}")
            started = time.perf_counter()
            round_once(sync)
            times.append(time.perf_counter() - started)
        reservations = sync.store.conn.execute("SELECT count(*) FROM reservations").fetchone()[0]
    finally:
        sync.store.close()
    bare = summary([_bare_upsert_seconds(database) for _ in range(ws.scale.delta_rounds)])
    measured = summary(times)
    figure.values = {"rounds": measured, "reservations_after": reservations, "baseline_bare_upsert": bare}
    figure.baseline = "bare SQLite upsert of 1,500 rows (median)"
    figure.ratio = ratio(measured["median_ms"], bare["median_ms"])
    figure.result = f"median {measured['median_ms'] / 1000:.3f} s, max {measured['max_ms'] / 1000:.3f} s"
    figure.passed = measured["median_ms"] <= SECONDS * 1000 and reservations == RESERVATIONS * ws.scale.delta_rounds
    return figure


def _bare_upsert_seconds(database) -> float:
    """The same number of rows rewritten in place, in one transaction."""
    conn = sqlite3.connect(database, timeout=5)
    rows = conn.execute(f"SELECT * FROM patrons LIMIT {CHANGED}").fetchall()
    bookings = conn.execute(f"SELECT * FROM reservations LIMIT {RESERVATIONS}").fetchall()
    started = time.perf_counter()
    with conn:
        conn.executemany(f"INSERT OR REPLACE INTO patrons VALUES ({', '.join('?' * len(rows[0]))})", rows)
        conn.executemany("INSERT OR REPLACE INTO reservations VALUES (?, ?, ?, ?, ?, ?)", bookings)
    seconds = time.perf_counter() - started
    conn.close()
    return seconds
