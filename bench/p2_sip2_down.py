"""P2: taps while the library system (SIP2) accepts connections but never answers.

The first tap of a card with a fresh cache entry waits only the short SIP2 budget
(``device.controller.SIP2_FRESH_BUDGET_SECONDS``) and is decided from the cache,
while the check itself runs on to its timeout on the SIP2 worker and opens the
circuit breaker. Every tap after that is decided from the cache at once. The
first tap is reported on its own. The Koha-Suomi door controller in Finnish
libraries waits 5,000 ms on every tap in the same situation.
"""

from __future__ import annotations

import socket
import time

from bench.baseline import BareTap
from bench.data import DOORS
from bench.report import Figure
from bench.rig import BenchDevice, Taps
from bench.timing import ratio, summary
from sync.sip2 import Sip2Checker, Sip2Config

P99_MS = 50
#: Every tap, the first one included, is decided within this while SIP2 is down.
FIRST_TAP_MS = 300
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
                # The first check runs on to its timeout on the worker, then opens the breaker.
                give_up = time.monotonic() + config.timeout + 2
                while checker.breaker.state != "open" and time.monotonic() < give_up:
                    time.sleep(0.01)
                latencies, missed = taps.run(device, ws.scale.sip2_taps, before=bare_tap.once)
                breaker_after = checker.breaker.state
        finally:
            checker.close()
    figure = Figure(
        "P2", "tap while SIP2 is down",
        f"first <= {FIRST_TAP_MS} ms (timeout {config.timeout * 1000:.0f} ms); then p99 <= {P99_MS} ms",
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
        and first_ms <= FIRST_TAP_MS and following["p99_ms"] <= P99_MS
    )
    return figure
