"""P2: taps while the library system (SIP2) accepts connections but never answers.

The first tap waits out the check's timeout and opens the circuit breaker; every
tap after it is decided from the cache at once. The Koha-Suomi door controller
in Finnish libraries waits 5,000 ms on every tap in the same situation.
"""

from __future__ import annotations

import socket

from bench.baseline import BareTap
from bench.data import DOORS
from bench.report import Figure
from bench.rig import BenchDevice, Taps
from bench.timing import ratio, summary
from sync.sip2 import Sip2Checker, Sip2Config

P99_MS = 50
#: What the first tap may add to the timeout: one ordinary decision.
FIRST_TAP_MARGIN_MS = 50
SSAUTHENTICATOR_MS = 5000


def run(ws) -> Figure:
    database = ws.database()
    # Listens but never accepts: the kernel completes the connection, nobody answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        config = Sip2Config(host="127.0.0.1", port=silent.getsockname()[1], username="ovi", password="bench",
                            institution="BENCH", profile="koha-suomi")
        checker = Sip2Checker(config)
        taps = Taps(ws.scale.patrons, seed=13)
        try:
            with BenchDevice(database, sip2=checker) as device, BareTap(database, ws.scale.patrons) as bare_tap:
                first = device.tap(DOORS[0], taps.number())
                breaker_after_first = checker.breaker.state
                latencies, missed = taps.run(device, ws.scale.sip2_taps, before=bare_tap.once)
                breaker_after = checker.breaker.state
        finally:
            checker.close()
    figure = Figure(
        "P2", "tap while SIP2 is down",
        f"first <= timeout {config.timeout * 1000:.0f} (+{FIRST_TAP_MARGIN_MS}) ms; then p99 <= {P99_MS} ms",
    )
    bare, following = summary(bare_tap.times), summary(latencies)
    first_ms = round(first * 1000, 1) if first is not None else None
    figure.values = {
        "timeout_ms": config.timeout * 1000, "first_tap_ms": first_ms, "following": following, "missed": missed,
        "breaker_after_first": breaker_after_first, "breaker_at_end": breaker_after,
        "baseline_sqlite": bare, "ssauthenticator_ms_per_tap": SSAUTHENTICATOR_MS,
    }
    figure.baseline = "SQLite lookup+insert+commit p99"
    figure.ratio = ratio(following["p99_ms"], bare["p99_ms"])
    figure.result = f"first {first_ms} ms, then p99 {following['p99_ms']} ms (breaker {breaker_after})"
    figure.passed = (
        first_ms is not None and missed == 0 and breaker_after == "open"
        and first_ms <= config.timeout * 1000 + FIRST_TAP_MARGIN_MS and following["p99_ms"] <= P99_MS
    )
    return figure
