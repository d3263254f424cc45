"""The test central service (tests/central_server.py) in a process of its own, at benchmark size.

Its own process, because at a million patrons it holds a gigabyte and spends a
core on JSON: inside the benchmark's process it would compete for the GIL with
the door being timed, which a real central service never does. The parent steers
it with one-line commands on its standard input (see ``main``).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from bench.data import patron_item, patron_keys
from bench.workspace import REPO

#: The page size docs/central-protocol.md suggests (about 2 MB a page).
PAGE_SIZE = 10_000
BRANCH = "bench"
BOOTH_RESOURCE = "smartblock-1"


class CentralProcess:
    def __init__(self, patrons: int, token: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.central", str(patrons), token],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.url = self._answer()

    def command(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def pages(self) -> int:
        """Patron pages (snapshot or changes) served so far."""
        return int(self.command("pages"))

    def events(self) -> dict:
        """What the central service has received: unique uuids, accepted and duplicate counts."""
        return json.loads(self.command("events"))

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "CentralProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _answer(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the central service process ended (exit code {self.proc.poll()})")
        return line.strip()


def main() -> None:
    """``python -m bench.central PATRONS TOKEN``: print the URL, then answer commands:
    ``delta P R`` (P changed patrons and R new booth reservations), ``down 1|0``
    (an outage), ``pages`` (patron pages served so far), ``events`` (what was received, as JSON). Ends when stdin closes."""
    from tests.central_server import CentralServer, Feed

    class SnapshotFeed(Feed):
        """The test Feed rebuilds the whole list for every page it serves; at a million
        patrons that is a second a page, so one version's list is kept while it is paged."""

        _kept: tuple[int, list] = (-1, [])

        def state(self, version: int) -> list[dict]:
            if self._kept[0] != version:
                self._kept = (version, super().state(version))
            return self._kept[1]

    patrons, token = int(sys.argv[1]), sys.argv[2]
    keys = patron_keys(patrons)
    server = CentralServer(branch=BRANCH, token=token, page_size=PAGE_SIZE)
    server.patrons = SnapshotFeed("card_key", "p")
    server.patrons.put(*(patron_item(i, keys[i]) for i in range(patrons)))
    rng = random.Random(3)
    reservations = 0
    with server:
        print(server.url, flush=True)
        for line in sys.stdin:
            command, *args = line.split()
            if command == "delta":
                changed, booked = int(args[0]), int(args[1])
                for i in rng.sample(range(patrons), changed):
                    server.patrons.put(patron_item(i, keys[i]) | {"blocked_reason": rng.choice([None, "lost card"])})
                begin = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=1)
                for n in range(reservations, reservations + booked):
                    start = begin + timedelta(hours=n)
                    server.reservations.put({
                        "id": f"bench-{n}", "resource": BOOTH_RESOURCE, "card_key": keys[rng.randrange(patrons)],
                        "begin": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat(), "state": "confirmed",
                    })
                reservations += booked
                answer = "ok"
            elif command == "down":
                server.down = args[0] == "1"
                answer = "ok"
            elif command == "pages":
                answer = str(len(server.gets("patrons")))
            elif command == "events":
                answer = json.dumps({
                    "unique": len(server.events),
                    "accepted": sum(accepted for accepted, _ in server.event_posts),
                    "duplicates": sum(duplicates for _, duplicates in server.event_posts),
                })
            else:
                answer = f"unknown command {command}"
            print(answer, flush=True)


if __name__ == "__main__":
    main()
