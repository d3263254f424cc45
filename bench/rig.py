"""The real device in this process, as tests/test_device_integration.py runs it: the
Controller and its loop, serial card readers on pseudo-terminals, doors on
gpiozero's mock pins.

A tap is timed from writing the card's frame into the pty (what the reader's USB
chip does) to the lock pin going active. The controller commits the decision
before it energises the relay, so at that moment the decision is on disk too.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Callable

from gpiozero.pins.mock import MockFactory, MockPin

from bench.data import DOORS, KEY, LOCK_PINS, allowed, card_number, patron_key
from device.config import Config, DoorConfig, ReaderConfig
from device.controller import Controller
from device.store import Store
from sync.sip2 import Sip2Checker

#: Taps are spread over this many seconds at random, so they meet the reader at
#: every point of its read cycle, as patrons do.
MAX_GAP = 0.05
#: A granted tap whose relay has not moved after this long is counted as missed.
TAP_TIMEOUT = 5.0


class TimedPin(MockPin):
    """A mock pin that notes when it last went active: the relay energising."""

    def __init__(self, factory, info):
        super().__init__(factory, info)
        self.activated = threading.Event()
        self.activated_at = 0.0

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed and value:
            self.activated_at = time.perf_counter()
            self.activated.set()
        return changed


class BenchDevice:
    """Two doors, each with a line-framed serial reader on a pty, on one database."""

    def __init__(self, database: Path, *, sip2: Sip2Checker | None = None):
        self._ptys = {door: os.openpty() for door in DOORS}
        doors = tuple(
            DoorConfig(
                id=door, kind="entrance", lock_pin=LOCK_PINS[door],
                reader=ReaderConfig(type="serial", device=os.ttyname(slave), framing="line", dedupe_seconds=0.5),
            )
            for door, (_, slave) in self._ptys.items()
        )
        self.config = Config(
            path=database.with_suffix(".toml"), branch="bench", timezone="Europe/Helsinki",
            database=database, consortium_key_file=database.with_suffix(".key"), doors=doors,
        )
        self.store = Store(database, durable=True)
        self.factory = MockFactory(pin_class=TimedPin)
        self.controller = Controller(self.config, self.store, consortium_key=KEY, pin_factory=self.factory, sip2=sip2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.controller.run, args=(self._stop,), daemon=True)
        self._thread.start()
        self._wait_for_readers(database)

    def _wait_for_readers(self, database: Path, timeout: float = 5.0) -> None:
        """A frame written before a reader has opened its port is flushed away unread."""
        watcher = Store(database)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                status = watcher.status()
                if all(status.get(f"reader:{door}", {}).get("value", {}).get("online") for door in DOORS):
                    return
                time.sleep(0.02)
            raise RuntimeError(f"the readers did not open within {timeout} s")
        finally:
            watcher.close()

    def __enter__(self) -> "BenchDevice":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def tap(self, door: str, number: str) -> float | None:
        """Seconds from the frame to the relay, or None if the relay did not move."""
        pin = self.factory.pin(LOCK_PINS[door])
        pin.activated.clear()
        started = time.perf_counter()
        os.write(self._ptys[door][0], f"{number}\r\n".encode())
        if not pin.activated.wait(TAP_TIMEOUT):
            return None
        latency = pin.activated_at - started
        # Relocked at once, so the next tap moves the relay again.
        self.controller.call(self.controller.doors[door].release)
        return latency

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.controller.close()
        self.store.close()
        for master, slave in self._ptys.values():
            os.close(master)
            os.close(slave)


class Taps:
    """Patrons who may come in, tapping at random doors after random short gaps.

    ``blocked`` are card keys blocked since the data was built (P4's changes, which a
    later snapshot brings in again): their taps would be refused and counted as missed."""

    def __init__(self, patrons: int, seed: int = 7, blocked: frozenset[str] = frozenset()):
        self.patrons = patrons
        self.rng = random.Random(seed)
        self.blocked = blocked

    def number(self) -> str:
        while True:
            i = self.rng.randrange(self.patrons)
            if allowed(i) and not (self.blocked and patron_key(i) in self.blocked):
                return card_number(i)

    def run(self, device: BenchDevice, count: int | None = None, *, until: Callable[[], object] | None = None,
            before: Callable[[], None] | None = None, deadline: float = 600.0) -> tuple[list[float], int]:
        """Tap ``count`` times, or until ``until()`` is true, calling ``before()`` ahead of each tap;
        (latencies, taps that did not open)."""
        latencies: list[float] = []
        missed = 0
        give_up = time.monotonic() + deadline
        while time.monotonic() < give_up and (count is None or len(latencies) + missed < count):
            if until is not None and until():
                break
            time.sleep(self.rng.uniform(0, MAX_GAP))
            if before is not None:
                before()
            latency = device.tap(self.rng.choice(DOORS), self.number())
            if latency is None:
                missed += 1
            else:
                latencies.append(latency)
        return latencies, missed

    def warm_up(self, device: BenchDevice) -> None:
        """The first taps open the readers and the database pages; they are not counted."""
        self.run(device, 5)
