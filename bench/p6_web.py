"""P6: the staff page and the stats API under 20 clients at once.

Each client alternates the Today page (signed in as staff) and a month of
``/api/v1/stats`` (with the API token) as fast as answers come: the target is on
that. Then, reported beside it and not judged, the same 20 clients as browsers
use the page: each waits ``POLL_SECONDS`` after an answer before asking again,
as the Today page's live part does (``data-interval="3"``). The baseline is a
bare standard-library HTTP server answering a fixed JSON body under the same load:
the least an HTTP answer costs on this machine. It is measured even while the app
is missing, so its figure is there to compare with once the app lands.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from http.client import HTTPConnection, HTTPException
from typing import Callable
from urllib.parse import urlsplit

from bench import web
from bench.report import Figure
from bench.timing import ratio, summary
from bench.workspace import REPO

CLIENTS = 20
P95_MS = 50
#: The realistic figure's pause between an answer and the next request: the Today page's refresh.
POLL_SECONDS = 3


def run(ws) -> Figure:
    figure = Figure("P6", "staff page and API", f"{CLIENTS} clients: p95 <= {P95_MS} ms, 0 errors")
    bare, bare_errors = _bare_server_load(ws.scale.web_seconds)
    bare_summary = summary(bare)
    figure.values = {"baseline_bare_http": bare_summary | {"errors": bare_errors}}
    figure.baseline = "bare stdlib HTTP server p95"
    database = ws.database()
    config_path, url = web.config(ws, database)
    server = web.start(config_path, url, ws.dir / "p6-web.log")
    try:
        today_or_stats = staff_requests(web.staff_cookie(url, config_path), web.api_token(config_path))
        latencies, errors = load(today_or_stats, url, ws.scale.web_seconds)
        polled, polled_errors = load(today_or_stats, url, ws.scale.web_seconds, think=POLL_SECONDS)
    finally:
        server.stop()
    measured, polling = summary(latencies), summary(polled)
    figure.values |= {"requests": measured, "errors": errors, f"polling_every_{POLL_SECONDS}s": polling | {"errors": polled_errors}}
    figure.ratio = ratio(measured["p95_ms"], bare_summary["p95_ms"])
    figure.result = (
        f"p95 {measured['p95_ms']} ms over {measured['n']} requests, {errors} errors"
        f" (not judged: polling every {POLL_SECONDS} s, p95 {polling['p95_ms']} ms, {polled_errors} errors)"
    )
    figure.passed = errors == 0 and measured["p95_ms"] <= P95_MS
    return figure


def staff_requests(cookie: str, token: str) -> Callable[[int], tuple[str, dict]]:
    """A staff client's ``n``th request: the Today page and a month of the stats API in turn."""
    end = date.today()
    stats = f"/api/v1/stats?from={end - timedelta(days=30)}&to={end}&by=day"

    def today_or_stats(n: int) -> tuple[str, dict]:
        return ("/", {"Cookie": cookie}) if n % 2 else (stats, {"Authorization": f"Bearer {token}"})

    return today_or_stats


def load(
    request: Callable[[int], tuple[str, dict]], base_url: str, seconds: float, think: float = 0,
    clients: int = CLIENTS, stop: threading.Event | None = None,
) -> tuple[list[float], int]:
    """``clients`` threads, each on its own kept-alive connection, asking ``request(n)``
    (a path and headers) again ``think`` seconds after an answer is read, for
    ``seconds`` or until ``stop`` is set. Thinking clients start at random moments
    within one pause (or the run, if shorter), as browsers opened at different times do.

    http.client, not requests: requests costs the load generator itself a
    millisecond or two of CPU a request, which on two cores would be measured as
    the server's latency.
    """
    address = urlsplit(base_url)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    stop = stop or threading.Event()

    def client() -> None:
        nonlocal errors
        connection = HTTPConnection(address.hostname, address.port, timeout=5)
        n = 0
        time.sleep(random.uniform(0, min(think, seconds)))
        while time.monotonic() < stop_at and not stop.is_set():
            n += 1
            path, headers = request(n)
            started = time.perf_counter()
            try:
                connection.request("GET", path, headers=headers)
                answer = connection.getresponse()
                answer.read()
                ok = answer.status == 200
            except (OSError, HTTPException):
                connection.close()  # reconnects on the next request
                ok = False
            took = time.perf_counter() - started
            with lock:
                latencies.append(took)
                errors += not ok
            time.sleep(think)
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    return latencies, errors


def _bare_server_load(seconds: float) -> tuple[list[float], int]:
    server = subprocess.Popen([sys.executable, "-m", "bench.bare_http"], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        return load(lambda n: ("/", {}), url, seconds)
    finally:
        server.stdin.close()
        server.wait(10)
