"""The building around the doors: how many people are inside, the lights and the alarm.

The rules are pure functions and one small counter, so they are tested as tables;
``BuildingOutputs`` is the thin gpiozero adapter for the two relays.

How people are counted
----------------------
Without a people counter, an entry is a granted tap followed by the door opening
and closing, and an exit is a press of the exit button: a tailgater is invisible,
and somebody leaving behind another person is never subtracted. With a counter
(an in/out pulse pair at the entrance) the counter's pulses are the truth, and a
door cycle that lets in more people than it had grants is tailgating.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gpiozero import DigitalInputDevice, OutputDevice

from device.config import BuildingConfig
from device.schedule import Schedule

log = logging.getLogger("omaovi.building")

OPEN_MODES = ("staffed", "self_service")


def closed_since(schedule: Schedule, now: datetime, lookback: timedelta = timedelta(days=1)) -> datetime | None:
    """When the current closed stretch began (at most ``lookback`` ago), or None when open.

    For a device that starts at night: it must not light the library for the
    grace period after a 3 a.m. reboot, nor hold back the alarm.
    """
    if schedule.mode_at(now) != "closed":
        return None
    began, moment = now - lookback, now - lookback
    while (change := schedule.next_change(moment)) is not None and change[0] <= now:
        moment = change[0]
        if change[1] == "closed":
            began = moment
    return began


def tailgating(people_in: int, grants: int) -> bool:
    """More people went in during one door cycle than there were granted cards."""
    return people_in > grants


def lights_on(mode: str, closed_since: datetime | None, now: datetime, off_after: timedelta) -> bool:
    """On while the branch is open, and for ``off_after`` after it closes (the last patrons find the door)."""
    return mode in OPEN_MODES or (closed_since is not None and now - closed_since < off_after)


def alarm_armed(
    mode: str, closed_since: datetime | None, now: datetime, arm_after: timedelta, occupancy: int, doors_shut: bool
) -> bool:
    """Armed only when closed long enough, nobody is counted inside and every door is shut and locked.

    A door standing unlocked or open means someone is coming or going (a staff card
    at night disarms by opening the door), so the alarm waits for it.
    """
    return (
        mode == "closed" and closed_since is not None and now - closed_since >= arm_after
        and occupancy == 0 and doors_shut
    )


@dataclass
class _Cycle:
    grants: int = 0
    counted_in: int = 0
    opened: bool = False


@dataclass
class Occupancy:
    """The estimate of people inside, from the entrances' taps, door cycles, exits and counters."""

    #: Entrance doors that have a people counter: their pulses count instead of grants and exits.
    counted_doors: frozenset[str] = frozenset()
    count: int = 0
    _cycles: dict[str, _Cycle] = field(default_factory=dict)

    def _cycle(self, door: str) -> _Cycle:
        return self._cycles.setdefault(door, _Cycle())

    def granted(self, door: str) -> None:
        self._cycle(door).grants += 1

    def opened(self, door: str) -> None:
        self._cycle(door).opened = True

    def closed(self, door: str) -> tuple[int, int] | None:
        """End a door cycle. Returns (people in, grants) when that was tailgating, else None."""
        cycle = self._cycles.pop(door, _Cycle())
        if door in self.counted_doors:
            return (cycle.counted_in, cycle.grants) if tailgating(cycle.counted_in, cycle.grants) else None
        if cycle.opened:
            self.count += cycle.grants
        return None

    def exit_pressed(self, door: str) -> None:
        if door not in self.counted_doors:
            self._leave()

    def person_in(self, door: str) -> None:
        self._cycle(door).counted_in += 1
        self.count += 1

    def person_out(self, door: str) -> None:
        self._leave()

    def reset(self) -> None:
        self.count = 0
        self._cycles.clear()

    def _leave(self) -> None:
        # Never below zero: one exit too many (two people, one press) must not hide a later entry.
        self.count = max(0, self.count - 1)


class BuildingOutputs:
    """The lights relay and the alarm-arming relay, each optional.

    Both start released: after a reboot the lights are off and the alarm not armed
    until the controller has looked at the hours and the count, a second later.
    """

    def __init__(self, cfg: BuildingConfig, *, pin_factory=None):
        def relay(pin: int | None, active_high: bool) -> OutputDevice | None:
            if pin is None:
                return None
            return claimed.enter_context(
                OutputDevice(pin, active_high=active_high, initial_value=False, pin_factory=pin_factory)
            )

        with ExitStack() as claimed:  # a pin that cannot be claimed releases the other
            self.lights = relay(cfg.lights_pin, cfg.lights_active_high)
            self.alarm = relay(cfg.alarm_pin, cfg.alarm_active_high)
            claimed.pop_all()

    def set(self, *, lights: bool, armed: bool) -> list[str]:
        """Drive the relays; the changes made, for the log."""
        changes = []
        for name, device, want in (("lights", self.lights, lights), ("alarm", self.alarm, armed)):
            if device is not None and bool(device.is_active) != want:
                device.value = want
                changes.append(f"{name} {'on' if want else 'off'}")
        return changes

    def close(self) -> None:
        for device in (self.lights, self.alarm):
            if device is not None:
                device.close()


class PeopleCounter:
    """A people counter's "in" and "out" pulse outputs (open collector to ground), read with the pull-up.

    gpiozero calls back from its own thread, so the handlers only post work.
    """

    def __init__(self, in_pin: int | None, out_pin: int | None, on_in, on_out, *, pin_factory=None):
        self.inputs = []
        with ExitStack() as claimed:  # a pin that cannot be claimed releases the other
            for pin, handler in ((in_pin, on_in), (out_pin, on_out)):
                if pin is not None:
                    device = claimed.enter_context(DigitalInputDevice(pin, pull_up=True, pin_factory=pin_factory))
                    device.when_activated = handler
                    self.inputs.append(device)
            claimed.pop_all()

    def close(self) -> None:
        for device in self.inputs:
            device.close()
