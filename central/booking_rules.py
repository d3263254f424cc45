"""A booth's booking rules, and the one decision they make: may this booking be made or cancelled?

Pure: the caller gathers what the decision needs (the booth's rules, the branch's
hours, how many bookings the card already holds, the time now) and gets back either
None or a ``Refusal`` whose ``reason`` is one of a closed set, so that the booking
page can tell the patron exactly why in their own language, and, where it helps, the
nearest booking that the rules would allow.

Lengths are real time (a booking 02:00–05:00 on the spring night lasts two hours),
the slot grid is the branch's wall clock (slots start at local midnight; a slot
divides an hour, so the clocks' one-hour jumps keep the grid), and days ahead are
counted in the branch's local days.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from device.schedule import MINUTES_PER_DAY, Schedule

#: Which of the branch's open hours a booth may be booked in.
WITHIN = {"self_service": frozenset({"self_service"}), "staffed": frozenset({"staffed"}), "both": frozenset({"self_service", "staffed"})}


class Reason(str, enum.Enum):
    """Why a booking or a cancellation is refused. The booking page has a text for each, in fi, sv and en."""

    IN_THE_PAST = "in_the_past"
    OFF_GRID = "off_grid"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    TOO_FAR_AHEAD = "too_far_ahead"
    OUTSIDE_HOURS = "outside_hours"
    TOO_MANY_BOOKINGS = "too_many_bookings"
    TOO_LATE_TO_CANCEL = "too_late_to_cancel"


#: What staff booking at the desk may override, deliberately and on the record (the
#: booking's ``overrides``). Never: a booking in the past, off the grid (it would
#: leave slots no one can book), of the wrong length, or outside the hours the
#: booth's door is open for it.
DESK_OVERRIDABLE = frozenset({Reason.TOO_FAR_AHEAD, Reason.TOO_MANY_BOOKINGS, Reason.TOO_LATE_TO_CANCEL})


@dataclass(frozen=True)
class BoothRules:
    """One booth's rules, as stored with it (central/schema.py ``resources``)."""

    min_minutes: int = 60
    max_minutes: int = 240
    slot_minutes: int = 30
    within: str = "both"
    days_ahead: int = 14
    max_bookings: int = 2
    cancel_until_minutes: int = 0

    def problems(self) -> list[str]:
        """What is wrong with these rules, each as a sentence; empty when they can be used."""
        found = []
        if not 1 <= self.slot_minutes <= 60 or 60 % self.slot_minutes:
            found.append(f"slot of {self.slot_minutes} minutes: an hour must divide into whole slots (5, 10, 15, 20, 30 or 60)")
        elif self.min_minutes % self.slot_minutes or self.max_minutes % self.slot_minutes:
            found.append(f"the shortest ({self.min_minutes} min) and longest ({self.max_minutes} min) booking must be whole slots of {self.slot_minutes} minutes")
        if self.min_minutes <= 0 or self.max_minutes < self.min_minutes:
            found.append(f"the shortest booking ({self.min_minutes} min) must be more than 0 and at most the longest ({self.max_minutes} min)")
        if self.within not in WITHIN:
            found.append(f"within {self.within!r}: use one of {', '.join(WITHIN)}")
        if not 0 <= self.days_ahead <= 366:
            found.append(f"{self.days_ahead} days ahead: use 0 (today only) to 366")
        if self.max_bookings < 1:
            found.append(f"{self.max_bookings} bookings per card: at least 1")
        if self.cancel_until_minutes < 0:
            found.append(f"cancel until {self.cancel_until_minutes} minutes before: use 0 (until it starts) or more")
        return found


@dataclass(frozen=True)
class Refusal:
    reason: Reason
    #: The nearest booking (begin, end) the rules allow, when there is a sensible one.
    alternative: tuple[datetime, datetime] | None = None


def check_booking(
    rules: BoothRules,
    begin: datetime,
    end: datetime,
    now: datetime,
    *,
    tz: ZoneInfo,
    hours: Schedule | None,
    bookings_held: int,
    overrides: frozenset[Reason] = frozenset(),
) -> Refusal | None:
    """The first rule this booking breaks, or None when it may be made.

    ``hours`` is None when the central service does not keep the branch's hours: the
    branch decides its own, and the open-hours rule cannot be checked here.
    ``bookings_held`` counts the card's bookings at this branch that have not ended.
    ``overrides`` are the rules the desk chose to set aside (see DESK_OVERRIDABLE)."""
    length = end - begin
    if begin < now:
        return Refusal(Reason.IN_THE_PAST, _shift(_next_slot(now, rules.slot_minutes, tz), length))
    if not _on_grid(begin, rules.slot_minutes, tz) or length % timedelta(minutes=rules.slot_minutes):
        start = _nearest_slot(begin, rules.slot_minutes, tz, not_before=now)
        return Refusal(Reason.OFF_GRID, _shift(start, _clamp(_round(length, rules.slot_minutes), rules)))
    if length < timedelta(minutes=rules.min_minutes):
        return Refusal(Reason.TOO_SHORT, _shift(begin, timedelta(minutes=rules.min_minutes)))
    if length > timedelta(minutes=rules.max_minutes):
        return Refusal(Reason.TOO_LONG, _shift(begin, timedelta(minutes=rules.max_minutes)))
    if Reason.TOO_FAR_AHEAD not in overrides and begin.astimezone(tz).date() > last_bookable_day(rules, now, tz):
        return Refusal(Reason.TOO_FAR_AHEAD)
    if hours is not None and not within_hours(hours, begin, end, WITHIN[rules.within]):
        return Refusal(Reason.OUTSIDE_HOURS, _nearest_open(rules, begin, length, now, tz, hours))
    if Reason.TOO_MANY_BOOKINGS not in overrides and bookings_held >= rules.max_bookings:
        return Refusal(Reason.TOO_MANY_BOOKINGS)
    return None


def check_cancel(rules: BoothRules, begin: datetime, now: datetime, *, overrides: frozenset[Reason] = frozenset()) -> Refusal | None:
    """None when the booking starting at ``begin`` may still be cancelled."""
    if Reason.TOO_LATE_TO_CANCEL not in overrides and now > begin - timedelta(minutes=rules.cancel_until_minutes):
        return Refusal(Reason.TOO_LATE_TO_CANCEL)
    return None


def last_bookable_day(rules: BoothRules, now: datetime, tz: ZoneInfo) -> date:
    return now.astimezone(tz).date() + timedelta(days=rules.days_ahead)


def within_hours(hours: Schedule, begin: datetime, end: datetime, modes: frozenset[str]) -> bool:
    """Whether every moment of [begin, end) is in one of ``modes``."""
    if hours.mode_at(begin) not in modes:
        return False
    moment = begin
    while (change := hours.next_change(moment, horizon_days=2)) is not None and change[0] < end:
        if change[1] not in modes:
            return False
        moment = change[0]
    return True


def _nearest_open(rules: BoothRules, begin: datetime, length: timedelta, now: datetime, tz: ZoneInfo, hours: Schedule):
    """The grid start nearest to ``begin`` (earlier or later, not past, not too far ahead) where a booking this long fits the hours."""
    modes = WITHIN[rules.within]
    step = timedelta(minutes=rules.slot_minutes)
    last_day = last_bookable_day(rules, now, tz)
    later = earlier = begin
    for _ in range((rules.days_ahead + 1) * MINUTES_PER_DAY // rules.slot_minutes):
        later, earlier = later + step, earlier - step
        for start in (earlier, later):
            if start >= now and start.astimezone(tz).date() <= last_day and _on_grid(start, rules.slot_minutes, tz) \
                    and within_hours(hours, start, start + length, modes):
                return start, start + length
    return None


def _on_grid(moment: datetime, slot: int, tz: ZoneInfo) -> bool:
    local = moment.astimezone(tz)
    return local.second == 0 and local.microsecond == 0 and (local.hour * 60 + local.minute) % slot == 0


def _grid_before(moment: datetime, slot: int, tz: ZoneInfo) -> datetime:
    """The last grid start at or before ``moment``, counted in real minutes from local midnight."""
    local = moment.astimezone(tz)
    midnight = datetime.combine(local.date(), time(), tzinfo=tz).astimezone(timezone.utc)
    elapsed = moment.astimezone(timezone.utc) - midnight
    return midnight + elapsed // timedelta(minutes=slot) * timedelta(minutes=slot)


def _next_slot(moment: datetime, slot: int, tz: ZoneInfo) -> datetime:
    start = _grid_before(moment, slot, tz)
    return start if start >= moment else start + timedelta(minutes=slot)


def _nearest_slot(moment: datetime, slot: int, tz: ZoneInfo, *, not_before: datetime) -> datetime:
    before = _grid_before(moment, slot, tz)
    after = before + timedelta(minutes=slot)
    nearest = before if moment - before < after - moment else after
    return nearest if nearest >= not_before else _next_slot(not_before, slot, tz)


def _round(length: timedelta, slot: int) -> timedelta:
    """To the nearest whole slots, half a slot up: the patron asked for at least that much."""
    step = timedelta(minutes=slot)
    return max(step, (length + step / 2) // step * step)


def _clamp(length: timedelta, rules: BoothRules) -> timedelta:
    return min(max(length, timedelta(minutes=rules.min_minutes)), timedelta(minutes=rules.max_minutes))


def _shift(begin: datetime, length: timedelta) -> tuple[datetime, datetime]:
    return begin, begin + length
