"""The branch as it is right now: the mode of the hours, the doors, the booths.

The Today page, the Doors page and the public booth board all answer "what is
happening now?" from the same rows the device and sync write; this module is
where those rows become plain values, so the three pages can never disagree.
Nothing here knows about HTML or languages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from device.config import Config, DoorConfig
from device.events import parse_utc
from device.policy import Reservation
from device.schedule import Schedule
from device.store import Store, day_bounds

#: A gap between booth reservations shorter than this is not worth offering.
MIN_FREE_SLOT = timedelta(minutes=30)
#: How far ahead the Today page looks for a booth's next reservation.
NEXT_RESERVATION_HORIZON = timedelta(days=7)


def utc_now() -> datetime:
    """The one clock of these pages; tests pin it."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class ModeNow:
    mode: str
    #: When the mode changes next (local time), and to what; None for two weeks of the same.
    change_at: datetime | None
    next_mode: str | None
    #: 0 when the change is today, 1 tomorrow, and so on.
    days_ahead: int

    @property
    def until(self) -> tuple[int, date, str]:
        """Days ahead, day and clock of the change as people write it: a change at midnight ends the day before at 24.00."""
        at = self.change_at
        if at.hour == 0 and at.minute == 0:
            return self.days_ahead - 1, (at - timedelta(days=1)).date(), "24.00"
        return self.days_ahead, at.date(), f"{at:%H.%M}"


def mode_now(schedule: Schedule, now: datetime) -> ModeNow:
    local_today = now.astimezone(schedule.tz).date()
    change = schedule.next_change(now)
    if change is None:
        return ModeNow(schedule.mode_at(now), None, None, 0)
    at = change[0].astimezone(schedule.tz)
    return ModeNow(schedule.mode_at(now), at, change[1], (at.date() - local_today).days)


@dataclass(frozen=True)
class Segment:
    """A stretch of a local day in one mode, with where it sits on a 0..1 timeline of the day."""

    start: datetime
    end: datetime
    mode: str
    x: float
    width: float


def day_segments(schedule: Schedule, day: date) -> list[Segment]:
    """The whole day as segments, measured in real time so DST days draw right."""
    day_start, day_end = day_bounds(day, schedule.tz)
    length = (day_end - day_start).total_seconds()

    def fraction(moment: datetime) -> float:
        return (moment.astimezone(timezone.utc) - day_start).total_seconds() / length

    return [
        Segment(start, end, mode, fraction(start), fraction(end) - fraction(start))
        for start, end, mode in schedule.day_timeline(day)
    ]


def day_fraction(tz: ZoneInfo, day: date, moment: datetime) -> float:
    """Where ``moment`` falls in the local ``day``, from 0 (midnight) to 1 (the next)."""
    day_start, day_end = day_bounds(day, tz)
    return (moment - day_start).total_seconds() / (day_end - day_start).total_seconds()


def open_spans(schedule: Schedule, day: date) -> list[tuple[datetime, datetime]]:
    """The day's stretches when the library is open in any mode, back-to-back modes merged; UTC."""
    spans: list[tuple[datetime, datetime]] = []
    for start, end, mode in schedule.day_timeline(day):
        if mode == "closed":
            continue
        start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


@dataclass(frozen=True)
class DoorNow:
    id: str
    label: str
    kind: str
    unlock_seconds: float
    state: str
    lockdown: bool
    hold_until: datetime | None
    #: When the device last wrote this door's state; None if it never has.
    updated_at: datetime | None
    #: Since when the door's PIN keypad has not worked, so that it opens by card alone; None while it works.
    card_only_since: datetime | None = None


def doors_now(config: Config, status: dict[str, dict]) -> list[DoorNow]:
    """Every configured door with the state the device last published for it."""
    return [door_now(door, status.get(f"door:{door.id}"), status.get(f"keypad:{door.id}")) for door in config.doors]


def door_now(door: DoorConfig, published: dict | None, keypad: dict | None = None) -> DoorNow:
    value = (published or {}).get("value") or {}
    hold = value.get("hold_until")
    card_only = keypad is not None and door.keypad is not None and keypad["value"].get("works") is False
    return DoorNow(
        id=door.id,
        label=door.label,
        kind=door.kind,
        unlock_seconds=door.unlock_seconds,
        state=value.get("state", "unknown"),
        lockdown=bool(value.get("lockdown")),
        hold_until=datetime.fromisoformat(hold) if hold else None,
        updated_at=parse_utc(published["updated_at"]) if published else None,
        card_only_since=parse_utc(keypad["updated_at"]) if card_only else None,
    )


@dataclass(frozen=True)
class BoothNow:
    """A booth's reservations as the public may see them: times only, never whose."""

    id: str
    label: str
    #: The end of the reservation in progress (back-to-back ones joined), or None when free.
    in_use_until: datetime | None
    #: The next confirmed reservation that has not begun: (begin, end), or None.
    next_reservation: tuple[datetime, datetime] | None
    #: Today's stretches from now on when the library is open and the booth is not reserved.
    free_slots: list[tuple[datetime, datetime]]


def booths_now(config: Config, store: Store, schedule: Schedule, now: datetime) -> list[BoothNow]:
    return [booth_now(door, store, schedule, now) for door in config.doors if door.kind == "booth" and door.resource]


def booth_now(door: DoorConfig, store: Store, schedule: Schedule, now: datetime) -> BoothNow:
    today = now.astimezone(schedule.tz).date()
    _, day_end = day_bounds(today, schedule.tz)
    # Only a confirmed reservation opens the booth; requested or unpaid ones leave it free.
    taken = [r for r in store.reservations_between(door.resource, now, now + NEXT_RESERVATION_HORIZON) if r.state == "confirmed"]
    in_use_until = _in_use_until(taken, now)
    # A reservation that carries on the one in progress is part of "in use", not the next one.
    upcoming = next(((r.begin, r.end) for r in taken if r.begin > (in_use_until or now)), None)
    return BoothNow(
        id=door.id,
        label=door.label,
        in_use_until=in_use_until,
        next_reservation=upcoming,
        free_slots=free_slots(open_spans(schedule, today), [r for r in taken if r.begin < day_end], now),
    )


def _in_use_until(reservations: list[Reservation], now: datetime) -> datetime | None:
    until = None
    for reservation in reservations:  # ordered by begin
        if reservation.begin <= (until or now) and reservation.end > (until or now):
            until = reservation.end
    return until


def free_slots(
    spans: list[tuple[datetime, datetime]], reservations: list[Reservation], now: datetime
) -> list[tuple[datetime, datetime]]:
    """The open spans from ``now`` on, minus the reservations, leaving out gaps under MIN_FREE_SLOT."""
    slots = []
    for span_start, span_end in spans:
        cursor = max(span_start, now)
        for reservation in reservations:
            if reservation.end <= cursor or reservation.begin >= span_end:
                continue
            if reservation.begin > cursor:
                slots.append((cursor, reservation.begin))
            cursor = max(cursor, reservation.end)
        if cursor < span_end:
            slots.append((cursor, span_end))
    return [(start, end) for start, end in slots if end - start >= MIN_FREE_SLOT]


@dataclass(frozen=True)
class Lockout:
    """A card locked out of PIN entry: only as much of its key as tells two apart, and the end."""

    card: str
    until: datetime


@dataclass(frozen=True)
class BuildingNow:
    """The building extras as the device last published them.

    A part the branch has not configured is left off the page rather than shown
    as "unknown": ``counts_people``, ``has_lights``, ``has_alarm`` and
    ``pin_lockouts is not None`` say which parts there are; a value of None in a
    configured part means the device has not reported it yet.
    """

    counts_people: bool
    people_inside: int | None
    has_lights: bool
    lights: bool | None
    has_alarm: bool
    alarm_armed: bool | None
    pin_lockouts: list[Lockout] | None


def building_now(config: Config, status: dict[str, dict], now: datetime, key_prefix: int) -> BuildingNow:
    """The estimate counts on every device, but it is only worth a figure where
    something relies on it: a people counter at a door, or an alarm that waits
    for it to reach 0. Without either it only knows the exit button."""
    building = config.building
    occupancy = _published(status, "occupancy", {})
    outputs = _published(status, "building", {})
    lockouts = None
    if config.pin is not None:
        lockouts = [Lockout(key[:key_prefix], until) for key, until in pin_lockouts(status, now)]
    return BuildingNow(
        counts_people=counts_people(config),
        people_inside=occupancy.get("count"),
        has_lights=building.lights_pin is not None,
        lights=outputs.get("lights"),
        has_alarm=building.alarm_pin is not None,
        alarm_armed=outputs.get("alarm_armed"),
        pin_lockouts=lockouts,
    )


def people_inside_after_close(building: BuildingNow, mode: str) -> int | None:
    """The people counted inside while the hours say closed, 0 while open: one figure
    a monitor can alert on. None until the device has reported the estimate."""
    if building.people_inside is None:
        return None
    return building.people_inside if mode == "closed" else 0


def has_people_counter(config: Config) -> bool:
    """Whether a door counts people (and so can tell tailgating)."""
    return any(door.counter_in_pin is not None for door in config.doors)


def counts_people(config: Config) -> bool:
    """Whether the occupancy estimate is worth showing: see ``building_now``."""
    return config.building.alarm_pin is not None or has_people_counter(config)


def pin_lockouts(status: dict[str, dict], now: datetime) -> list[tuple[str, datetime]]:
    """The cards the device last reported locked out of PIN entry and when each lockout ends,
    without those already over: the device drops them too, but only while it runs."""
    lockouts = ((item["card_key"], parse_utc(item["until"])) for item in _published(status, "pin_lockouts", []))
    return [(key, until) for key, until in lockouts if until > now]


def _published(status: dict[str, dict], key: str, empty):
    """What the device last wrote under ``key``, or ``empty`` when it never has."""
    found = status.get(key)
    return empty if found is None or found["value"] is None else found["value"]
