"""P3: a full patron snapshot from the central service while the doors keep deciding.

``omaovi sync --once`` runs as its own process, as on a branch, so its peak RSS is
its own; the central service is a third process. The doors are tapped the whole
time the sync runs.
"""

from __future__ import annotations

import sqlite3
import time

from bench.data import patron_item, patron_keys
from bench.report import Figure
from bench.rig import BenchDevice, Taps
from bench.sync_runs import sync_once_process
from bench.timing import ratio, summary
from device.store import Store

SECONDS = 60
RSS_MB = 150
TAP_P99_MS = 20
#: Past this the sync process is killed and the figure fails.
GIVE_UP_SECONDS = 600


def run(ws) -> Figure:
    figure = Figure("P3", "full patron snapshot",
                    f"<= {SECONDS} s, sync RSS <= {RSS_MB} MB, taps meanwhile p99 <= {TAP_P99_MS} ms")
    database = ws.database()
    config = ws.config_file(database, ws.central().url)
    taps = Taps(ws.scale.patrons, seed=17)
    with BenchDevice(database) as device:
        taps.warm_up(device)
        sync = sync_once_process(config, ws.dir / "p3-sync.log")
        latencies, missed = taps.run(device, until=sync.poll, deadline=GIVE_UP_SECONDS)
        done = sync.wait(GIVE_UP_SECONDS)
    store = Store(database)
    swapped_in = store.patron_count()
    cursor = (store.sync_state("patrons") or {}).get("cursor")
    store.close()
    bare = _bare_insert_seconds(ws)
    concurrent = summary(latencies)
    figure.values = {
        "patrons": ws.scale.patrons, "seconds": round(done.seconds, 2), "peak_rss_mb": round(done.peak_rss_mb, 1),
        "cpu_seconds": round(done.cpu_seconds, 2), "exit_code": done.returncode, "patrons_after": swapped_in,
        "cursor_after": cursor, "taps_meanwhile": concurrent, "missed_taps": missed,
        "baseline_bare_insert_seconds": round(bare, 2),
    }
    figure.baseline = "bare SQLite insert of the same rows"
    figure.ratio = ratio(done.seconds, bare)
    figure.result = (f"{done.seconds:.1f} s, peak RSS {done.peak_rss_mb:.0f} MB, "
                     f"taps meanwhile p99 {concurrent.get('p99_ms')} ms ({concurrent['n']} taps)")
    figure.passed = (
        done.returncode == 0 and swapped_in == ws.scale.patrons and missed == 0 and concurrent["n"] > 0
        and done.seconds <= SECONDS and done.peak_rss_mb <= RSS_MB and concurrent["p99_ms"] <= TAP_P99_MS
    )
    return figure


def _bare_insert_seconds(ws) -> float:
    """The same patron rows inserted straight into an empty table with one executemany."""
    rows = [
        (item["card_key"], int(item["self_service"]), item["blocked_reason"], item["valid_until"], item["age_ok_from"],
         int(item["staff"]), "2026-01-01T00:00:00.000000Z", "central")
        for i, key in enumerate(patron_keys(ws.scale.patrons))
        for item in (patron_item(i, key),)
    ]
    path = ws.dir / "p3-baseline.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE patrons (card_key TEXT PRIMARY KEY, self_service INTEGER, blocked_reason TEXT,"
                 " valid_until TEXT, age_ok_from TEXT, staff INTEGER, fetched_at TEXT, source TEXT) WITHOUT ROWID")
    started = time.perf_counter()
    with conn:
        conn.executemany("INSERT INTO patrons VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    seconds = time.perf_counter() - started
    conn.close()
    path.unlink()
    return seconds
