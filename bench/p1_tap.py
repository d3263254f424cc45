"""P1: from a card frame arriving at the reader to the lock relay, decision committed."""

from __future__ import annotations

from bench.baseline import BareTap
from bench.report import Figure
from bench.rig import BenchDevice, Taps
from bench.timing import ratio, summary

P99_MS = 10
MAX_RATIO = 3


def run(ws) -> Figure:
    figure = Figure("P1", "tap-to-relay latency", f"p99 <= {P99_MS} ms and <= {MAX_RATIO}x bare SQLite")
    database = ws.database()
    taps = Taps(ws.scale.patrons)
    with BenchDevice(database) as device, BareTap(database, ws.scale.patrons) as bare_tap:
        taps.warm_up(device)
        latencies, missed = taps.run(device, ws.scale.taps, before=bare_tap.once)
    measured, bare = summary(latencies), summary(bare_tap.times)
    figure.values = {"taps": measured, "missed": missed, "baseline_sqlite": bare,
                     "median_ratio": ratio(measured["median_ms"], bare["median_ms"]),
                     "patrons": ws.scale.patrons, "events": ws.scale.events}
    figure.baseline = "SQLite lookup+insert+commit p99"
    figure.ratio = ratio(measured["p99_ms"], bare["p99_ms"])
    figure.result = f"p99 {measured['p99_ms']} ms, median {measured['median_ms']} ms, {missed} missed"
    figure.passed = missed == 0 and measured["p99_ms"] <= P99_MS and figure.ratio <= MAX_RATIO
    return figure
