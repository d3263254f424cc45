"""C1: the consortium's branches syncing every 30 s against the real central service.

Every branch does a change round (an event batch, the patrons and the reservations
changes) once per period, at its own moment. As each round begins, the consortium
changes a little, as it does all day: some patrons' permissions change (every branch
then gets them: the patrons stream is consortium-wide) and some booths are booked
at the desk. Those writes are made by this process through the service's own
modules, as the console and the pages make them.

Measured: each request's time (from sending it to the answer read) and the CPU time
the service used over all the rounds, per round: its own process, plus on
PostgreSQL the database server's processes (on SQLite the database is inside the
service). The baseline is the same branch rounds, in the same schedule, against a
trivial WSGI app with fixed answers on the same waitress and thread count.
"""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from bench.central_load import EVENTS_PER_BATCH, Branch, run_rounds
from bench.central_site import ENGINE_NAMES, RESOURCE, cpu_used, each_engine, start, synced_branches
from bench.procs import cpu_seconds
from bench.report import Figure
from bench.timing import ratio, summary
from bench.workspace import REPO

#: Every request a branch makes in a round: past this the service is queueing.
P95_MS = 100
#: The share of one core the sync traffic may take, so that the same server has
#: room for the pages, the imports and the branches' daily snapshots (C2).
CPU_SHARE = 1 / 3
#: Consortium-wide changes of patrons' permissions per round (about 57,000 a day).
PATRON_CHANGES = 20
#: Desk or online bookings per round, consortium-wide.
BOOKINGS = 10


def run(ws) -> list[Figure]:
    return each_engine("C1", ws, _measure)


def _measure(ws, engine: str) -> Figure:
    from central.config import ServerSettings

    scale = ws.scale
    figure = Figure(
        f"C1 {ENGINE_NAMES[engine]}", f"{scale.central_branches} branches syncing every {scale.round_seconds:g} s",
        f"p95 <= {P95_MS} ms, CPU <= {scale.round_seconds * CPU_SHARE:g} s per round (1/3 core), 0 errors, events stored once",
    )
    site = ws.central_site(engine)
    rounds = scale.central_rounds
    baseline = _baseline(site, ws, ServerSettings.threads)
    events_before = _stored_events(site)
    branches = synced_branches(site)
    changes = _Changes(site)
    service, url = start(site, ws.dir / f"c1-{engine}-central.log")
    try:
        used = cpu_used(service.pid, site)
        load = run_rounds(url, branches, rounds, scale.round_seconds, site.keys, before_round=changes.make)
        used = {part: round((after - used[part]) / rounds, 3) for part, after in cpu_used(service.pid, site).items()}
    finally:
        service.stop()
        changes.close()
    stored = _stored_events(site) - events_before
    sent = len(load.latencies["events"]) * EVENTS_PER_BATCH
    measured = summary(load.all_latencies())
    cpu = round(sum(used.values()), 3)
    figure.values = {
        "engine": engine, "branches": len(branches), "rounds": rounds, "period_seconds": scale.round_seconds,
        "patrons": scale.central_patrons, "requests": measured,
        "by_kind": {kind: summary(times) for kind, times in load.latencies.items()},
        "cpu_seconds_per_round": used | {"total": cpu}, "errors": len(load.errors), "first_errors": load.errors[:5],
        "late_rounds": load.late, "items_received": load.items, "events_sent": sent, "events_stored": stored,
        "changes_per_round": {"patrons": PATRON_CHANGES, "bookings": BOOKINGS, "events_per_branch": EVENTS_PER_BATCH},
        "baseline_trivial_wsgi": baseline,
    }
    figure.baseline = "trivial WSGI app on the same waitress, p95"
    figure.ratio = ratio(measured["p95_ms"], baseline["requests"]["p95_ms"])
    database = f" + {used['database']:.2f} s PostgreSQL" if "database" in used else ""
    figure.result = (
        f"p95 {measured['p95_ms']} ms over {measured['n']} requests; CPU {cpu:.2f} s per round"
        f" ({used['service']:.2f} s service{database}; baseline {baseline['cpu_seconds_per_round']:.2f} s);"
        f" {len(load.errors)} errors, {stored} of {sent} events stored"
    )
    figure.passed = (not load.errors and stored == sent and measured["p95_ms"] <= P95_MS
                     and cpu <= scale.round_seconds * CPU_SHARE)
    return figure


class _Changes:
    """The consortium's own writes at the start of each round."""

    def __init__(self, site):
        from central import db

        self.site = site
        self.engine = db.open_engine(site.url)
        self.rng = random.Random(13)
        self.booked = 0
        self.tomorrow = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)

    def make(self, _round: int) -> None:
        from central import bookings, db, patrons
        from device.policy import Patron

        now = datetime.now(timezone.utc)
        changed = [
            Patron(card_key=key, self_service=True, blocked_reason=self.rng.choice(["fines", "lost card", None]),
                   valid_until=(now + timedelta(days=self.rng.randrange(30, 900))).date(), age_ok_from=None,
                   staff=False, pin_verifier=None)
            for key in self.rng.sample(self.site.keys, PATRON_CHANGES)
        ]
        with db.writing(self.engine) as connection:
            patrons.put(connection, changed, now)
            for branch in self.rng.sample(self.site.branches, min(BOOKINGS, len(self.site.branches))):
                begin = self.tomorrow + timedelta(hours=self.booked)  # every booking its own hour: none overlaps
                bookings.book(connection, branch, RESOURCE, self.rng.choice(self.site.keys), begin, begin + timedelta(hours=1), now)
                self.booked += 1

    def close(self) -> None:
        self.engine.dispose()


def _baseline(site, ws, threads: int) -> dict:
    """The same rounds, in the same schedule, against the trivial app; its p95 and CPU per round."""
    branches = [Branch(branch, token, {"patrons": "x", "reservations": "x"}) for branch, token in site.tokens.items()]
    app = subprocess.Popen([sys.executable, "-m", "bench.bare_wsgi", str(threads)], cwd=REPO,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = app.stdout.readline().strip()
        if not url:
            raise RuntimeError(f"the baseline app ended at once (exit code {app.poll()})")
        before = cpu_seconds(app.pid)
        load = run_rounds(url, branches, ws.scale.central_rounds, ws.scale.round_seconds, site.keys)
        used = (cpu_seconds(app.pid) - before) / ws.scale.central_rounds
    finally:
        app.stdin.close()
        try:
            app.wait(10)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()
    if load.errors:
        raise RuntimeError(f"the baseline app failed requests: {load.errors[:3]}")
    return {"requests": summary(load.all_latencies()), "cpu_seconds_per_round": round(used, 3)}


def _stored_events(site) -> int:
    from sqlalchemy import func, select

    from central import db, schema

    engine = db.open_engine(site.url)
    try:
        with db.reading(engine) as connection:
            return connection.execute(select(func.count()).select_from(schema.events)).scalar_one()
    finally:
        engine.dispose()
