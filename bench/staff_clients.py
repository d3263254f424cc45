"""P9's staff clients in a process of their own: tablets and laptops, not the branch's Pi.

They stay outside the CPU budget the branch's processes are held to, so their
own work is not counted as the Pi's. The parent starts this process before it
enters the budget and steers it by lines on standard input: the first is JSON
with ``url``, ``cookie``, ``token`` and ``clients``, which starts the load (as
P6's, as fast as answers come); ``count`` answers with the requests sent so far;
end of input stops the clients, and the last line is JSON with every request's
summary and the errors.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

from bench.p6_web import load, staff_requests
from bench.timing import summary
from bench.workspace import REPO

#: Longer than any run; the parent ends the load by closing standard input.
LONGEST_SECONDS = 3600


class StaffClients:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.staff_clients"], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def start(self, url: str, cookie: str, token: str, clients: int) -> None:
        self._say(json.dumps({"url": url, "cookie": cookie, "token": token, "clients": clients}))

    def count(self) -> int:
        self._say("count")
        return int(self._answer())

    def finish(self) -> dict:
        """Stops the clients: the summary of their requests, with ``errors``."""
        self.proc.stdin.close()
        done = json.loads(self._answer())
        self.proc.wait(30)
        return done

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _say(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _answer(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the staff clients' process ended (exit code {self.proc.poll()})")
        return line


def main() -> None:
    orders = json.loads(sys.stdin.readline())
    stop = threading.Event()
    sent = 0
    lock = threading.Lock()
    next_request = staff_requests(orders["cookie"], orders["token"])

    def counted(n: int) -> tuple[str, dict]:
        nonlocal sent
        with lock:
            sent += 1
        return next_request(n)

    result: dict = {}

    def run() -> None:
        latencies, errors = load(counted, orders["url"], LONGEST_SECONDS, clients=orders["clients"], stop=stop)
        result.update(summary(latencies), errors=errors)

    clients = threading.Thread(target=run)
    clients.start()
    for line in sys.stdin:
        if line.strip() == "count":
            with lock:
                print(sent, flush=True)
    stop.set()
    clients.join()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
