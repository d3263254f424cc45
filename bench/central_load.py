"""Many branches' sync rounds against one central service, each at its own moment (C1).

Each branch does what ``omaovi sync`` does every round, in its order: one event
batch up, then the patrons and the reservations changes since its cursors (every
page, carrying each new cursor into the next round). A branch's Pi started its
timer at its own moment, so each branch keeps a random offset within the period;
a round is every branch once. Each branch round opens one connection and keeps it
for its three requests, as the sync's session does.

http.client, not requests: requests costs the load generator a millisecond or two
of CPU a request, which on two cores would be counted as the service's latency.
The same generator runs against the baseline app, whose answers are fixed.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.client import HTTPConnection, HTTPException
from typing import Callable
from urllib.parse import quote, urlsplit

#: Events in each branch's batch every round: a busy branch (1,500 visits a day, a
#: tap and an exit each, over 12 open hours) makes about 2 a round; 5 is the top of a
#: day. A branch with nothing to send sends no batch; here every branch sends one.
EVENTS_PER_BATCH = 5
#: Client threads: enough that a slow answer holds up no other branch's round.
WORKERS = 64
#: Pages a stream may take in one round before the round counts as broken.
MAX_PAGES = 100
TIMEOUT = 30.0
KINDS = ("events", "patrons", "reservations")


@dataclass
class Branch:
    id: str
    token: str
    #: The branch's stream cursors, as the sync keeps them between rounds.
    cursors: dict[str, str]
    #: Its outbox's next ``seq``.
    seq: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Load:
    #: Seconds each request took, by kind.
    latencies: dict[str, list[float]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    errors: list[str] = field(default_factory=list)
    #: Branch rounds that began more than a second after their moment (the generator fell behind).
    late: int = 0
    #: Items the branches received on the change streams.
    items: dict[str, int] = field(default_factory=lambda: {"patrons": 0, "reservations": 0})

    def all_latencies(self) -> list[float]:
        return [seconds for kind in KINDS for seconds in self.latencies[kind]]


def run_rounds(base_url: str, branches: list[Branch], rounds: int, period: float, card_keys: list[str],
               before_round: Callable[[int], None] = lambda r: None, seed: int = 5) -> Load:
    """Every branch once per ``period`` seconds, ``rounds`` times; ``before_round(r)`` runs as round r begins."""
    rng = random.Random(seed)
    offsets = {branch.id: rng.uniform(0, period) for branch in branches}
    start = time.monotonic() + 0.5
    jobs = sorted(((start + r * period + offsets[branch.id], branch) for r in range(rounds) for branch in branches),
                  key=lambda job: job[0])
    load = Load()
    lock = threading.Lock()
    address = urlsplit(base_url)

    def worker() -> None:
        while True:
            with lock:
                if not jobs:
                    return
                due, branch = jobs.pop(0)
            time.sleep(max(0.0, due - time.monotonic()))
            with lock:
                load.late += time.monotonic() - due > 1.0
            with branch.lock:
                _branch_round(address.hostname, address.port, branch, card_keys, load, lock)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(WORKERS, len(branches)))]
    for thread in threads:
        thread.start()
    for r in range(rounds):
        time.sleep(max(0.0, start + r * period - time.monotonic()))
        before_round(r)
    deadline = time.monotonic() + rounds * period + 120
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        load.errors.append("the branch rounds did not finish within two minutes of their last moment")
    return load


def _branch_round(host: str, port: int, branch: Branch, card_keys: list[str], load: Load, lock: threading.Lock) -> None:
    connection = HTTPConnection(host, port, timeout=TIMEOUT)
    headers = {"Authorization": f"Bearer {branch.token}", "User-Agent": "omaovi-sync/1", "Accept": "application/json"}
    try:
        batch = [_event(branch, card_keys) for _ in range(EVENTS_PER_BATCH)]
        body = json.dumps({"events": batch}).encode()
        _request(connection, "POST", f"/v1/branches/{branch.id}/events", body,
                 headers | {"Content-Type": "application/json"}, "events", load, lock)
        for stream in ("patrons", "reservations"):
            for _ in range(MAX_PAGES):
                page = _request(connection, "GET", f"/v1/branches/{branch.id}/{stream}?cursor={quote(branch.cursors[stream])}",
                                None, headers, stream, load, lock)
                if page is None:
                    break
                branch.cursors[stream] = page["cursor"]
                with lock:
                    load.items[stream] += len(page["items"])
                if not page["more"]:
                    break
    finally:
        connection.close()


def _request(connection: HTTPConnection, method: str, path: str, body: bytes | None, headers: dict, kind: str,
             load: Load, lock: threading.Lock) -> dict | None:
    started = time.perf_counter()
    try:
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
        status = answer.status
    except (OSError, HTTPException) as exc:
        connection.close()  # reconnects on the next request
        data, status = str(exc).encode(), None
    took = time.perf_counter() - started
    with lock:
        load.latencies[kind].append(took)
        if status != 200:
            load.errors.append(f"{kind}: {status} {data[:200]!r}")
    return json.loads(data) if status == 200 else None


def _event(branch: Branch, card_keys: list[str]) -> dict:
    seq, branch.seq = branch.seq, branch.seq + 1
    granted = seq % 2
    return {
        "uuid": str(uuid.uuid4()), "seq": seq,
        "ts": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "door": "main",
        "type": "tap" if granted else "exit", "reason": "granted" if granted else None, "mode": "self_service",
        "card_key": random.choice(card_keys) if granted else None,
        "detail": {"message": "Tervetuloa"} if granted else None,
    }
