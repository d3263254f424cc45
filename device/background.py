"""One worker thread for an optional part that may be slow or broken (a display, a speaker).

The door loop hands work over and goes on at once. The queue is short and drops
the oldest work when full: a display that has hung for a minute should show the
latest message when it comes back, not replay every tap it missed.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

log = logging.getLogger("omaovi.background")

QUEUE_LENGTH = 8


class Worker:
    def __init__(self, name: str):
        self.name = name
        self._queue: queue.Queue[Callable[[], object] | None] = queue.Queue(QUEUE_LENGTH)
        self._thread = threading.Thread(target=self._run, name=f"worker {name}", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[], object]) -> None:
        """Never blocks: when the queue is full, the oldest waiting work is dropped."""
        while True:
            try:
                self._queue.put_nowait(work)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    log.warning("%s is behind; dropped its oldest waiting work", self.name)
                except queue.Empty:
                    pass

    def close(self, timeout: float = 2.0) -> None:
        self.submit(None)  # type: ignore[arg-type]
        self._thread.join(timeout)

    def _run(self) -> None:
        while (work := self._queue.get()) is not None:
            try:
                work()
            except Exception:  # noqa: BLE001 - an optional part failing must not end the worker
                log.exception("%s failed", self.name)
