"""A branch with one entrance on mock pins, its real store and controller, and a clock the test steps.

The controller is driven from the test thread (``tap``, ``tick``) so that each
fault lands exactly between two taps, or runs its own loop with a real reader
(``start``); the hardware is gpiozero's MockFactory. The test reads the log
through a connection of its own, as the staff page would.
"""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from gpiozero.pins.mock import MockFactory

from device.cards import card_key
from device.config import Config, DoorConfig, PolicyConfig, ReaderConfig
from device.controller import Controller, TapResult
from device.events import NOT_A_VISIT
from device.policy import Patron
from device.schedule import Period
from device.store import Store

KEY = b"reliability-test-consortium-key!"
ALLOWED, STAFF, UNKNOWN = "10000001", "90000001", "55555555"
#: A 125 kHz tag's printed number: its UID read with uid_format "decimal" (ID 0x00989681).
ALLOWED_TAG = "0010000001"
LOCK_PIN, LED_PIN, BUZZER_PIN = 17, 23, 24


class Wall:
    """The system clock as the device reads it; a test steps it the way NTP does."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def step(self, delta: timedelta) -> None:
        self.now += delta


class Seconds:
    """A monotonic clock that moves only when the test says, for timers and retry intervals."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Branch:
    def __init__(
        self,
        tmp_path: Path,
        start: datetime,
        *,
        weekly: dict[int, tuple[Period, ...]] | None = None,
        exceptions: dict[date, tuple[Period, ...]] | None = None,
        store_class: type[Store] = Store,
        staffed_entrance: str = "card",
        clock: Callable[[], float] = time.monotonic,
        reader: ReaderConfig | None = None,
    ):
        self.wall = Wall(start)
        entrance = DoorConfig(
            id="entrance", kind="entrance", lock_pin=LOCK_PIN, led_pin=LED_PIN, buzzer_pin=BUZZER_PIN, reader=reader
        )
        self.config = Config(
            path=tmp_path / "omaovi.toml", branch="reliability", timezone="Europe/Helsinki",
            database=tmp_path / "omaovi.db", consortium_key_file=tmp_path / "key", doors=(entrance,),
            uid_format="decimal", policy=PolicyConfig(staffed_entrance=staffed_entrance),
        )
        self.store = store_class(self.config.database, durable=True)
        self.store.set_weekly(weekly if weekly is not None else {day: (Period(0, 1440, "self_service"),) for day in range(7)})
        if exceptions:
            self.store.set_exceptions(exceptions)
        fresh = dict(valid_until=date(2099, 1, 1), age_ok_from=date(2000, 1, 1), fetched_at=start)
        self.store.put_patrons([
            Patron(card_key=card_key(KEY, ALLOWED), self_service=True, **fresh),
            Patron(card_key=card_key(KEY, ALLOWED_TAG), self_service=True, **fresh),
        ], source="csv")
        self.store.add_staff_card(card_key(KEY, STAFF), "caretaker", "test")
        self.factory = MockFactory()
        self.controller = Controller(
            self.config, self.store, consortium_key=KEY, pin_factory=self.factory, wall=self.wall, clock=clock,
            start_readers=reader is not None,
        )
        self.view = Store(self.config.database)
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None

    def start(self) -> None:
        """Run the device loop in its own thread, as ``omaovi device`` does."""
        self._loop = threading.Thread(target=self.controller.run, args=(self._stop,), daemon=True)
        self._loop.start()

    def tap(self, number: str) -> TapResult:
        return self.controller.tap("entrance", number)

    def tick(self) -> None:
        self.controller._tick()

    @property
    def relay_on(self) -> bool:
        return bool(self.factory.pin(LOCK_PIN).state)

    def hourly(self, metric_prefix: str = "") -> dict[str, int]:
        """hourly_counts as {UTC hour: count}, summed over the metrics with this prefix: one per
        tap or happening (``tap_not_a_visit`` marks some taps a second time, so it is left out)."""
        totals: dict[str, int] = {}
        for row in self.view.counts(datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc)):
            if row["metric"].startswith(metric_prefix) and row["metric"] != NOT_A_VISIT:
                totals[row["hour"]] = totals.get(row["hour"], 0) + row["count"]
        return totals

    def events(self, **where) -> list[dict]:
        rows = reversed(self.view.events(limit=100_000))
        return [r for r in rows if all(r[k] == v for k, v in where.items())]

    def wait_for_event(self, timeout: float = 5.0, **where) -> dict:
        """The first logged event matching ``where``, waiting for it up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not (found := self.events(**where)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no event {where} within {timeout} s; the log: {[e['type'] for e in self.events()]}")
            time.sleep(0.02)
        return found[0]

    def close(self) -> None:
        self._stop.set()
        if self._loop is not None:
            self._loop.join(2)
        self.controller.close()
        self.store.close()
        self.view.close()
