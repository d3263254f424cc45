"""C2: one branch's full patron snapshot from the real central service, page by page.

A branch takes one when it first syncs, after a ``410 Gone`` (a restored database:
then every branch at once), and every 24 hours as a reconciliation
(``sync.central.SNAPSHOT_EVERY``). One client follows the pages as the sync does,
on one kept-alive connection; each page is timed from the request to its last byte.
The service's CPU time for the whole snapshot (and, on PostgreSQL, the database
server's) is measured too: it says what the branches' daily snapshots cost the
consortium's server.

The baseline is the same rows read bare: a keyset-paged ``SELECT`` of the same
columns, the same page size, through the engine's own driver, in the same run.
"""

from __future__ import annotations

import json
import time
from http.client import HTTPConnection
from urllib.parse import quote, urlsplit

from bench.central_site import ENGINE_NAMES, PAGE_SIZE, cpu_used, each_engine, start
from bench.report import Figure
from bench.timing import ratio, summary

#: The whole snapshot from the service: half of what P3 allows the branch for all of
#: it (60 s), so that the Pi's own writing of the pages has the other half.
SECONDS = 30
COLUMNS = "card_key, self_service, blocked_reason, valid_until, age_ok_from, staff, pin_verifier"


def run(ws) -> list[Figure]:
    return each_engine("C2", ws, _measure)


def _measure(ws, engine: str) -> Figure:
    patrons = ws.scale.central_patrons
    figure = Figure(f"C2 {ENGINE_NAMES[engine]}", f"{patrons:,}-patron snapshot, {PAGE_SIZE} a page",
                    f"whole snapshot <= {SECONDS} s")
    site = ws.central_site(engine)
    bare, bare_rows = _bare_pages(site.url, patrons)
    branch, token = next(iter(site.tokens.items()))
    service, url = start(site, ws.dir / f"c2-{engine}-central.log")
    try:
        before = cpu_used(service.pid, site)
        started = time.perf_counter()
        pages, keys = _snapshot(url, branch, token, patrons)
        whole = time.perf_counter() - started
        used = {part: round(after - before[part], 2) for part, after in cpu_used(service.pid, site).items()}
    finally:
        service.stop()
    cpu = sum(used.values())
    complete = len(keys) == patrons and len(set(keys)) == patrons and keys == sorted(keys)
    per_page, bare_page = summary(pages), summary(bare)
    branches = ws.scale.central_branches
    figure.values = {
        "engine": engine, "patrons": patrons, "page_size": PAGE_SIZE, "pages": per_page, "seconds": round(whole, 2),
        "patrons_received": len(keys), "complete_and_in_order": complete, "cpu_seconds": used | {"total": round(cpu, 2)},
        # Each branch takes one every 24 h: this many cores, all day, for the whole consortium.
        "daily_snapshots_cores": round(cpu * branches / 86400, 3),
        "baseline_bare_select": {"pages": bare_page, "seconds": round(sum(bare), 2), "rows": bare_rows},
    }
    figure.baseline = "bare keyset-paged SELECT of the same rows"
    figure.ratio = ratio(whole, sum(bare))
    figure.result = (
        f"{whole:.1f} s, page median {per_page['median_ms']:.0f} ms, p95 {per_page['p95_ms']:.0f} ms;"
        f" CPU {cpu:.1f} s (daily snapshots of {branches} branches: {cpu * branches / 86400:.2f} cores)"
    )
    figure.passed = complete and bare_rows == patrons and whole <= SECONDS
    return figure


def _snapshot(base_url: str, branch: str, token: str, patrons: int) -> tuple[list[float], list[str]]:
    """Every page of a snapshot, as the sync follows them; (seconds per page, the card keys received)."""
    address = urlsplit(base_url)
    connection = HTTPConnection(address.hostname, address.port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "omaovi-sync/1", "Accept": "application/json"}
    path = f"/v1/branches/{branch}/patrons"
    times: list[float] = []
    keys: list[str] = []
    try:
        for _ in range(patrons // PAGE_SIZE + 10):
            started = time.perf_counter()
            connection.request("GET", path, headers=headers)
            answer = connection.getresponse()
            body = answer.read()
            times.append(time.perf_counter() - started)
            if answer.status != 200:
                raise RuntimeError(f"snapshot page {len(times)}: {answer.status} {body[:200]!r}")
            page = json.loads(body)
            keys += [item["card_key"] for item in page["items"]]
            if not page["more"]:
                return times, keys
            path = f"/v1/branches/{branch}/patrons?cursor={quote(page['cursor'])}"
    finally:
        connection.close()
    raise RuntimeError(f"the snapshot did not end after {len(times)} pages")


def _bare_pages(url: str, patrons: int) -> tuple[list[float], int]:
    """The same rows, keyset-paged by card key through the bare driver; (seconds per page, rows)."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    connection = engine.raw_connection()
    mark = "?" if engine.dialect.name == "sqlite" else "%s"
    query = f"SELECT {COLUMNS} FROM patrons WHERE card_key > {mark} ORDER BY card_key LIMIT {PAGE_SIZE}"
    times: list[float] = []
    rows = 0
    try:
        cursor = connection.cursor()
        after = ""
        for _ in range(patrons // PAGE_SIZE + 10):
            started = time.perf_counter()
            cursor.execute(query, (after,))
            page = cursor.fetchall()
            times.append(time.perf_counter() - started)
            rows += len(page)
            if len(page) < PAGE_SIZE:
                return times, rows
            after = page[-1][0]
    finally:
        connection.close()
        engine.dispose()
    raise RuntimeError(f"the bare SELECT did not end after {len(times)} pages")
