"""P9: P1's taps on the CPU of a Raspberry Pi 4 class machine, while the staff web is
loaded and a full patron snapshot syncs.

Everything a branch's Pi runs is held to the CPU budget (bench/cpu_budget.py):
this process (the door loop and the bare-commit baseline), ``omaovi web`` with
its workers, and ``omaovi sync --once``, which is started inside and so is born
there. What stands for other machines stays outside: the staff clients
(bench/staff_clients.py, tablets) and the test central service (the consortium's).

The taps run the whole time the sync runs, as P3's do, so their number follows
the snapshot's length (a few in a ``--quick`` run, with its 2,000 patrons); the
staff clients send requests as fast as answers come, as P6's do. The requests
sent and the snapshot pages served in the taps' time are counted, so the figure
shows the load was really there. The first tap after the device starts, with the
web loaded, is reported on its own.
"""

from __future__ import annotations

import math
import os
import sqlite3

from bench import web
from bench.baseline import BareTap
from bench.central import PAGE_SIZE
from bench.cpu_budget import PERIOD_US, QUOTA_US, CpuBudget
from bench.report import Figure
from bench.rig import BenchDevice, Taps
from bench.staff_clients import StaffClients
from bench.sync_runs import sync_once_process
from bench.timing import ratio, summary
from device.store import Store

P99_MS = 50
MAX_RATIO = 3
CLIENTS = 5
#: Past this the sync process is killed and the figure fails.
GIVE_UP_SECONDS = 900


def run(ws) -> Figure:
    figure = Figure("P9", "tap on a Pi 4's CPU, web and snapshot running",
                    f"p99 <= {P99_MS} ms and <= {MAX_RATIO}x bare SQLite, both under the budget")
    database = ws.database()
    central = ws.central()
    config_path, url = web.config(ws, database, central.url)
    _forget_patron_cursor(database)
    taps = Taps(ws.scale.patrons, seed=29, blocked=_blocked(database))
    clients = StaffClients()
    server = sync = None
    try:
        server = web.start(config_path, url, ws.dir / "p9-web.log")
        # Names of its own: P6 has made the default ones in this run's database already.
        clients.start(url, web.staff_cookie(url, config_path, "bench-staff-p9"), web.api_token(config_path, "bench-p9"),
                      CLIENTS)
        with CpuBudget("p9") as budget:
            budget.add(server.pid, workers=True)
            budget.add(os.getpid())
            with BenchDevice(database) as device, BareTap(database, ws.scale.patrons) as bare_tap:
                first, first_missed = taps.run(device, 1)
                taps.warm_up(device)
                # Started after the warm-up: a --quick snapshot would be over before the first timed tap.
                pages_before, requests_before = central.pages(), clients.count()
                sync = sync_once_process(config_path, ws.dir / "p9-sync.log")
                latencies, missed = taps.run(device, until=sync.poll, before=bare_tap.once, deadline=GIVE_UP_SECONDS)
                requests_during = clients.count() - requests_before
                pages_during = central.pages() - pages_before
            done = sync.wait(30)  # the taps ran until it ended, or gave up on it
            throttled = budget.throttled()
        staff = clients.finish()
    finally:
        clients.kill()
        if sync is not None:
            sync.wait(0)
        if server is not None:
            server.stop()
    store = Store(database)
    patrons_after = store.patron_count()
    store.close()
    measured, bare = summary(latencies), summary(bare_tap.times)
    first_ms = round(first[0] * 1000, 3) if first else None
    figure.values = {
        "budget": {"cfs_period_us": PERIOD_US, "cfs_quota_us": QUOTA_US, "cpus": "0-1"} | throttled,
        "taps": measured, "missed": missed + first_missed, "first_tap_ms": first_ms, "baseline_sqlite": bare,
        "median_ratio": ratio(measured.get("median_ms", 0), bare.get("median_ms", 0)),
        "staff_clients": CLIENTS, "staff_requests_during_taps": requests_during, "staff_requests": staff,
        "snapshot_pages_during_taps": pages_during, "snapshot_pages": math.ceil(ws.scale.patrons / PAGE_SIZE),
        "sync_seconds": round(done.seconds, 1),
        "sync_exit_code": done.returncode, "patrons": ws.scale.patrons, "patrons_after": patrons_after,
    }
    figure.baseline = "SQLite lookup+insert+commit p99, same budget"
    figure.ratio = ratio(measured.get("p99_ms", 0), bare.get("p99_ms", 0))
    figure.result = (
        f"p99 {measured.get('p99_ms')} ms, median {measured.get('median_ms')} ms, first tap {first_ms} ms,"
        f" {missed + first_missed} missed ({measured['n']} taps; meanwhile {requests_during} staff requests"
        f" from {CLIENTS} clients, {pages_during} snapshot pages)"
    )
    figure.passed = (
        missed + first_missed == 0 and measured["n"] > 0 and requests_during > 0 and pages_during > 0
        and done.returncode == 0 and patrons_after == ws.scale.patrons
        and measured["p99_ms"] <= P99_MS and figure.ratio is not None and figure.ratio <= MAX_RATIO
    )
    return figure


def _forget_patron_cursor(database) -> None:
    """The sync then takes a full snapshot, as after P3 it would otherwise only fetch changes."""
    store = Store(database)
    store.forget_sync_cursor("patrons")
    store.close()


def _blocked(database) -> frozenset[str]:
    """The cards blocked now, P4's changes among them: the snapshot brings the same state again."""
    conn = sqlite3.connect(database)
    try:
        return frozenset(key for (key,) in conn.execute("SELECT card_key FROM patrons WHERE blocked_reason IS NOT NULL"))
    finally:
        conn.close()
