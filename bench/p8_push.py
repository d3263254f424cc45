"""P8: the event outbox after an outage: 100,000 events delivered, each exactly once.

The branch's own small database and a central service of its own, so the figure
is the outbox alone: the first round meets the outage and fails, the timed round
after it delivers the backlog.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

from bench.central import CentralProcess
from bench.report import Figure
from bench.sync_runs import round_once, runner
from bench.timing import ratio, summary
from bench.workspace import TOKEN
from device.events import TAP, Event
from device.store import Store
from sync.central import event_json

SECONDS = 30
_BATCH = 5_000


def run(ws) -> Figure:
    figure = Figure("P8", "event push after an outage", f"backlog delivered <= {SECONDS} s, exactly once")
    database = ws.dir / "outbox.db"
    times, bare, checks = [], [], []
    with CentralProcess(0, TOKEN) as central:
        sync = runner(ws.config_file(database, central.url))
        try:
            for _ in range(ws.scale.push_runs):
                _queue(sync.store, ws.scale.push_events)
                bare.append(_bare_read_and_encode(sync.store))
                central.command("down 1")
                outage = sync.run_once()
                central.command("down 0")
                before = central.events()
                started = time.perf_counter()
                round_once(sync)
                times.append(time.perf_counter() - started)
                after = central.events()
                checks.append({
                    "failed_during_outage": outage["events"] is not None,
                    "new_unique": after["unique"] - before["unique"],
                    "new_duplicates": after["duplicates"] - before["duplicates"],
                    "left_unpushed": sync.store.unpushed_event_count(),
                })
        finally:
            sync.store.close()
    measured, baseline = summary(times), summary(bare)
    exactly_once = all(
        c["failed_during_outage"] and c["new_unique"] == ws.scale.push_events and c["new_duplicates"] == 0
        and c["left_unpushed"] == 0 for c in checks
    )
    figure.values = {"events": ws.scale.push_events, "rounds": measured, "checks": checks,
                     "exactly_once": exactly_once, "baseline_read_and_encode": baseline}
    figure.baseline = "reading and JSON-encoding the backlog (median)"
    figure.ratio = ratio(measured["median_ms"], baseline["median_ms"])
    figure.result = (f"median {measured['median_ms'] / 1000:.2f} s for {ws.scale.push_events:,} events, "
                     f"{'exactly once' if exactly_once else 'NOT exactly once'}")
    figure.passed = exactly_once and measured["median_ms"] <= SECONDS * 1000
    return figure


def _queue(store: Store, count: int) -> None:
    """A backlog of taps spread over the last day, written as the device writes them."""
    start = datetime.now(timezone.utc) - timedelta(days=1)
    step = timedelta(days=1) / count
    for first in range(0, count, _BATCH):
        store.record([
            Event(ts=start + step * i, door="main", type=TAP, reason="granted", mode="self_service",
                  card_key=uuid.uuid4().hex * 2)
            for i in range(first, min(count, first + _BATCH))
        ])


def _bare_read_and_encode(store: Store) -> float:
    """What any outbox must do at least: read the waiting events and encode them."""
    started = time.perf_counter()
    rows = store.events_to_push(10 ** 9)
    json.dumps([event_json(row) for row in rows])
    return time.perf_counter() - started
