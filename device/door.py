"""One door: its lock relay, door contact, exit button, LED and buzzer, on gpiozero.

Wiring and the idle state
-------------------------
The lock relay is *active* exactly when the door should be unlocked, and it is
released (inactive) at start-up, so a reboot or a crash leaves it released:

- **Fail-secure** lock (electric strike, motor lock; locked without power): wire the
  lock through the relay's normally-open contact. Released relay = no power = locked.
- **Fail-safe** lock (magnetic lock; open without power, as fire codes often demand
  for escape routes): wire the lock through the relay's normally-closed contact.
  Released relay = power on = locked; a power cut still opens the door.

``lock_active_high`` follows the relay board: most opto-isolated boards switch on a
*low* input (``lock_active_high = false``). The door contact is a reed switch to
ground, read with the internal pull-up: closed door = low = active. The exit button
is a push button to ground, the same way.

Threading
---------
gpiozero calls back from its own threads. Every callback here only posts work to
the controller's queue, so all door state changes happen on one thread.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Callable

from gpiozero import LED, Button, Buzzer, DigitalInputDevice, OutputDevice

from device.config import DoorConfig
from device import events

log = logging.getLogger("omaovi.door")

#: After the relay drops, a door still moving under a patron's hand is not "forced".
FORCED_GRACE_SECONDS = 1.5
#: An exit button press covers the door opening within this many seconds.
EXIT_WINDOW_SECONDS = 10.0

Emit = Callable[[str, dict], None]
Post = Callable[[Callable[[], None]], None]


class Door:
    def __init__(
        self,
        cfg: DoorConfig,
        emit: Emit,
        post: Post,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        pin_factory=None,
    ):
        self.cfg = cfg
        self._emit = emit
        self._clock = clock
        self._wall = wall
        pf = {"pin_factory": pin_factory}
        self.lock = OutputDevice(cfg.lock_pin, active_high=cfg.lock_active_high, initial_value=False, **pf)
        self.contact = DigitalInputDevice(cfg.contact_pin, pull_up=True, **pf) if cfg.contact_pin is not None else None
        self.exit_button = Button(cfg.exit_button_pin, pull_up=True, **pf) if cfg.exit_button_pin is not None else None
        self.led = LED(cfg.led_pin, **pf) if cfg.led_pin is not None else None
        self.buzzer = Buzzer(cfg.buzzer_pin, **pf) if cfg.buzzer_pin is not None else None

        self._pulse_until: float | None = None
        self._opened_during_pulse = False
        self._hold_until: datetime | None = None
        self._schedule_unlocked = False
        self.lockdown = False
        self._relay_dropped_at = -1e9
        self._exit_pressed_at = -1e9
        # A door found open at start-up counts as open (held-open alarm), but its
        # closing is not logged as the end of an opening nobody saw begin.
        self._opened_at: float | None = self._clock() if self.contact is not None and not self.contact.is_active else None
        self._opening_seen = False
        self._held_alarm = False
        self._forced = False

        if self.contact is not None:
            self.contact.when_deactivated = lambda: post(self._on_opened)
            self.contact.when_activated = lambda: post(self._on_closed)
        if self.exit_button is not None:
            self.exit_button.when_pressed = lambda: post(self.exit_pressed)

    # -- what the outside asks ------------------------------------------------
    def grant(self) -> None:
        """Unlock for ``unlock_seconds``; relock as soon as the door has opened and closed.

        Called only for a decision that already took the lockdown into account (in
        lockdown only staff are granted), so it opens in lockdown too: a granted
        tap whose door stays shut would be logged and counted as an entry.
        """
        self._pulse(self.cfg.unlock_seconds, override_lockdown=True)
        self._signal(granted=True)

    def deny(self) -> None:
        self._signal(granted=False)

    def prompt_pin(self) -> None:
        """Two quick beeps and a slow LED blink: the card is fine, now the PIN.

        Different from one beep (granted) and three (refused), so a patron who does
        not look at the display still knows the door is waiting for the keypad.
        """
        if self.led is not None:
            self.led.blink(on_time=0.5, off_time=0.5, n=5)
        if self.buzzer is not None and not self._held_alarm:
            self.buzzer.blink(on_time=0.05, off_time=0.1, n=2)

    def exit_pressed(self) -> None:
        """Egress: the exit button opens the door even in lockdown."""
        self._exit_pressed_at = self._clock()
        self._emit(events.EXIT, {})
        self._pulse(self.cfg.unlock_seconds, override_lockdown=True)

    def pulse(self, seconds: float | None = None) -> None:
        self._pulse(seconds or self.cfg.unlock_seconds)

    def hold(self, until: datetime) -> None:
        self._hold_until = until
        self._apply()

    def set_lockdown(self) -> None:
        self.lockdown = True
        self._hold_until = None
        self._pulse_until = None
        self._apply()

    def release(self) -> None:
        """Back to normal: no hold, no lockdown; the schedule decides again."""
        self.lockdown = False
        self._hold_until = None
        self._pulse_until = None
        self._apply()

    def set_schedule_unlocked(self, unlocked: bool) -> None:
        """Staffed hours with ``staffed_entrance = "unlocked"`` keep the door open to all."""
        if unlocked != self._schedule_unlocked:
            self._schedule_unlocked = unlocked
            self._apply()

    def tick(self) -> None:
        """Timers: the end of a pulse or a hold, and the held-open alarm."""
        now = self._clock()
        if self._pulse_until is not None and now >= self._pulse_until:
            self._pulse_until = None
        if self._hold_until is not None and self._wall() >= self._hold_until:
            self._hold_until = None
        self._apply()
        if (
            self._opened_at is not None
            and not self._held_alarm
            and not self._kept_unlocked()
            and now - self._opened_at >= self.cfg.held_open_seconds
        ):
            self._held_alarm = True
            self._emit(events.HELD_OPEN, {"seconds": round(now - self._opened_at)})
            log.warning("door %s held open for %d s", self.cfg.id, now - self._opened_at)
            if self.buzzer is not None:
                self.buzzer.blink(on_time=0.5, off_time=0.5)

    @property
    def unlocked(self) -> bool:
        return bool(self.lock.is_active)

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    @property
    def state(self) -> str:
        """locked, unlocked, open, held_open or forced: what the staff page shows."""
        if self._forced:
            return "forced"
        if self._held_alarm:
            return "held_open"
        if self.is_open:
            return "open"
        return "unlocked" if self.unlocked else "locked"

    def status(self) -> dict:
        return {
            "state": self.state,
            "lockdown": self.lockdown,
            "hold_until": self._hold_until.isoformat() if self._hold_until else None,
        }

    def close(self) -> None:
        for device in (self.lock, self.contact, self.exit_button, self.led, self.buzzer):
            if device is not None:
                device.close()

    # -- internals ------------------------------------------------------------
    def _pulse(self, seconds: float, override_lockdown: bool = False) -> None:
        if self.lockdown and not override_lockdown:
            return
        self._pulse_until = self._clock() + seconds
        self._opened_during_pulse = False
        self._apply()

    def _kept_unlocked(self) -> bool:
        return self._hold_until is not None or self._schedule_unlocked

    def _apply(self) -> None:
        # In lockdown only exit-button and staff-grant pulses exist (set_lockdown clears the others).
        want = self._pulse_until is not None or (not self.lockdown and self._kept_unlocked())
        if want and not self.lock.is_active:
            self.lock.on()
            log.info("relay on door=%s", self.cfg.id)
        elif not want and self.lock.is_active:
            self.lock.off()
            self._relay_dropped_at = self._clock()
            log.info("relay off door=%s", self.cfg.id)

    def _on_opened(self) -> None:
        now = self._clock()
        self._opened_at = now
        self._opening_seen = True
        if self._pulse_until is not None:
            self._opened_during_pulse = True
        legitimate = (
            self.lock.is_active
            or now - self._relay_dropped_at < FORCED_GRACE_SECONDS
            or now - self._exit_pressed_at < EXIT_WINDOW_SECONDS
        )
        if legitimate:
            self._emit(events.DOOR_OPENED, {})
        else:
            self._forced = True
            self._emit(events.FORCED_OPEN, {})
            log.warning("door %s forced open", self.cfg.id)
            if self.buzzer is not None:
                self.buzzer.blink(on_time=0.2, off_time=0.2, n=25)

    def _on_closed(self) -> None:
        if self._opened_at is None:
            return
        seconds = self._clock() - self._opened_at
        self._opened_at = None
        alarm = self._held_alarm or self._forced
        self._held_alarm = self._forced = False
        if self._opening_seen:
            self._emit(events.DOOR_CLOSED, {"seconds": round(seconds, 1)})
        if alarm and self.buzzer is not None:
            self.buzzer.off()
        if self._opened_during_pulse and self._pulse_until is not None:
            # Relock at once: the next person needs a card of their own.
            self._pulse_until = None
            self._apply()

    def _signal(self, granted: bool) -> None:
        if granted:
            if self.led is not None:
                self.led.blink(on_time=self.cfg.unlock_seconds, off_time=0, n=1)
            if self.buzzer is not None and not self._held_alarm:
                self.buzzer.blink(on_time=0.1, off_time=0.1, n=1)
        else:
            if self.led is not None:
                self.led.blink(on_time=0.15, off_time=0.15, n=3)
            if self.buzzer is not None and not self._held_alarm:
                self.buzzer.blink(on_time=0.1, off_time=0.1, n=3)
