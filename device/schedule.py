"""Opening hours: which mode the doors are in at an instant, and when that changes.

Hours are kept the way people and the Finnish library directory (Kirkanta) write
them: a weekly pattern plus dated exceptions, each day a list of periods in the
branch's local wall-clock time. The door controller lives in real time instead: it
needs the mode now and the instant of the next change, also on the two nights a
year when the wall clock jumps. This module is the one place where wall-clock hours
become real instants; callers pass and receive timezone-aware datetimes.

A period never crosses midnight; "24:00" ends a period at the end of its day, and
a period that carries on after midnight is written as a second period starting at
"00:00" on the next day. Time not covered by any period is closed.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from types import MappingProxyType
from zoneinfo import ZoneInfo

MODES = ("staffed", "self_service", "closed")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MINUTES_PER_DAY = 24 * 60

_HHMM = re.compile(r"([0-9]{1,2}):([0-9]{2})")


class ScheduleError(ValueError):
    """Hours that cannot be right. The message names the day and the period at fault."""


@dataclass(frozen=True, order=True)
class Period:
    """One stretch of a local day in one mode.

    Minutes after local midnight rather than ``datetime.time``, because a period
    must be able to end at 24:00, which ``time`` cannot express. ``start`` is
    inclusive and ``end`` exclusive, so back-to-back periods share a boundary.
    """

    start: int
    end: int
    mode: str


def parse_hhmm(text: str, *, end: bool = False) -> int:
    """Read "HH:MM" as minutes after midnight.

    "24:00" is accepted only as the end of a period (``end=True``): it is how a
    period runs to midnight without crossing into the next day.
    """
    match = _HHMM.fullmatch(text) if isinstance(text, str) else None
    if match:
        hours, minutes = int(match[1]), int(match[2])
        total = hours * 60 + minutes
        if minutes < 60 and (total < MINUTES_PER_DAY or (end and total == MINUTES_PER_DAY)):
            return total
        if total == MINUTES_PER_DAY:
            raise ScheduleError(f"{text!r}: 24:00 can only end a period")
    allowed = "00:00–24:00" if end else "00:00–23:59"
    raise ScheduleError(f"{text!r} is not a time (expected HH:MM, {allowed})")


def format_hhmm(minutes: int) -> str:
    """Write minutes after midnight as "HH:MM"; the end of the day is "24:00", not "00:00"."""
    if not 0 <= minutes <= MINUTES_PER_DAY:
        raise ValueError(f"{minutes} minutes is not a time of day (0–{MINUTES_PER_DAY})")
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def segment_text(start: datetime, end: datetime) -> str:
    """"18:00–24:00" for a day_timeline segment; the day's end is 24:00, not 00:00.

    A segment across a DST change shows both offsets, "02:00+03:00–06:00+02:00":
    without them "03:30–03:00" would read as a range running backwards.
    """
    end_text = "24:00" if end.date() > start.date() and end.time() == time() else f"{end:%H:%M}"
    if start.utcoffset() != end.utcoffset():
        return f"{start:%H:%M}{offset_text(start)}–{end_text}{offset_text(end)}"
    return f"{start:%H:%M}–{end_text}"


def offset_text(moment: datetime) -> str:
    """The UTC offset as ISO 8601 writes it: "+03:00"."""
    return moment.isoformat()[-6:]


def ambiguous(moment: datetime) -> bool:
    """Whether the local wall time occurs twice, in the hour that repeats when the clocks go back."""
    return moment.replace(fold=1 - moment.fold).utcoffset() != moment.utcoffset()


MODE_NAMES = {"self_service": "self-service", "staffed": "staffed", "closed": "closed"}


def timeline_lines(schedule: "Schedule", first: date, days: int, zone_name: str, notes: dict[date, str] | None = None) -> list[str]:
    """Days of hours as ``omaovi hours show`` prints them: local time, a segment across a clock change marked,
    an exception with its note (a Kirkanta holiday's name, say)."""
    lines = []
    for offset in range(max(1, days)):
        day = first + timedelta(days=offset)
        note = (notes or {}).get(day)
        source = "weekly pattern" if day not in schedule.exceptions else f"exception: {note}" if note else "exception"
        lines.append(f"{day.strftime('%A')} {day.isoformat()} ({source}, {zone_name})")
        for start, end, mode in schedule.day_timeline(day):
            dst = f"  [{start:%Z}→{end:%Z}]" if start.utcoffset() != end.utcoffset() else ""
            lines.append(f"  {segment_text(start, end)}  {MODE_NAMES[mode]}{dst}")
    return lines


def _span(period: Period) -> str:
    return f"{format_hhmm(period.start)}–{format_hhmm(period.end)}"


def _check_period(period: Period, label: str) -> None:
    if not isinstance(period, Period):
        raise ScheduleError(f"{label}: {period!r} is not a Period")
    start, end = period.start, period.end
    if type(start) is not int or not 0 <= start < MINUTES_PER_DAY:
        raise ScheduleError(f"{label}: start {start!r} is not a minute of the day (0–{MINUTES_PER_DAY - 1})")
    if type(end) is not int or not 0 < end <= MINUTES_PER_DAY:
        raise ScheduleError(f"{label}: end {end!r} is not a minute of the day (1–{MINUTES_PER_DAY})")
    if end < start:
        raise ScheduleError(f"{label}: {_span(period)} ends before it starts")
    if end == start:
        raise ScheduleError(f"{label}: {_span(period)} is empty")
    if period.mode not in MODES:
        raise ScheduleError(f"{label}: {_span(period)} mode {period.mode!r} is not one of {', '.join(MODES)}")


def check_periods(periods: Iterable[Period], label: str) -> tuple[Period, ...]:
    """Check one day's periods and return them sorted by time.

    ``label`` names the day in the error message ("Monday", "2026-12-24"), so
    that whoever edits the hours can find the mistake.
    """
    checked = []
    for period in periods:
        _check_period(period, label)
        checked.append(period)
    checked.sort()
    for before, after in zip(checked, checked[1:]):
        if after.start < before.end:
            raise ScheduleError(f"{label}: {_span(before)} overlaps {_span(after)}")
    return tuple(checked)


def _boundaries(periods: tuple[Period, ...]) -> tuple[int, ...]:
    """The wall-clock minutes after 00:00 at which the mode of the day may change.

    Always ends with 24:00, where the next day's periods take over.
    """
    inner = {minute for period in periods for minute in (period.start, period.end)}
    return tuple(sorted(inner - {0, MINUTES_PER_DAY})) + (MINUTES_PER_DAY,)


#: Day timelines a Schedule keeps: more than a year of statistics by day.
_TIMELINES_KEPT = 1000


@dataclass(frozen=True)
class Schedule:
    """A branch's opening hours: a weekly pattern, dated exceptions and the zone they are in.

    Periods are checked and sorted on construction, so a Schedule that exists is
    valid; ``weekly`` and ``exceptions`` are then read-only mappings.
    """

    weekly: Mapping[int, tuple[Period, ...]]
    exceptions: Mapping[date, tuple[Period, ...]]
    tz: ZoneInfo = ZoneInfo("Europe/Helsinki")
    # Boundary minutes per weekday and per exception date, worked out once here
    # because next_change and day_timeline look them up at every step.
    _weekly_boundaries: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)
    _exception_boundaries: Mapping[date, tuple[int, ...]] = field(init=False, repr=False, compare=False)
    # Each day's timeline once worked out: a month of statistics asks for 31 and
    # the Today page for today's on every refresh (benchmark P6).
    _timelines: dict[date, tuple] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.tz, tzinfo):
            raise TypeError(f"tz must be a ZoneInfo, not {self.tz!r}")
        weekly = {}
        for weekday, periods in self.weekly.items():
            if type(weekday) is not int or not 0 <= weekday <= 6:
                raise ScheduleError(f"weekday {weekday!r} is not one of 0 (Monday) … 6 (Sunday)")
            weekly[weekday] = check_periods(periods, WEEKDAYS[weekday])
        exceptions = {}
        for day, periods in self.exceptions.items():
            # A datetime is a date too, but never equal to one, so it would never match.
            if type(day) is not date:
                raise ScheduleError(f"exception {day!r} is not a date")
            exceptions[day] = check_periods(periods, day.isoformat())
        set_field = object.__setattr__
        set_field(self, "weekly", MappingProxyType(weekly))
        set_field(self, "exceptions", MappingProxyType(exceptions))
        set_field(self, "_weekly_boundaries", tuple(_boundaries(weekly.get(wd, ())) for wd in range(7)))
        set_field(self, "_exception_boundaries", {day: _boundaries(p) for day, p in exceptions.items()})

    def periods_on(self, day: date) -> tuple[Period, ...]:
        """The periods of a local date: its exception if it has one, else its weekday's."""
        if day in self.exceptions:
            return self.exceptions[day]
        return self.weekly.get(day.weekday(), ())

    def mode_at(self, instant: datetime) -> str:
        """The mode at a real instant: that of its local wall time on its local date.

        In the repeated hour of an autumn night both instants with the same wall
        time have the same mode, because hours are written in wall time.
        """
        return self._mode_at_local(self._local(instant))

    def next_change(self, instant: datetime, horizon_days: int = 14) -> tuple[datetime, str] | None:
        """The first instant after ``instant`` at which the mode differs from now, and that mode.

        The instant is in UTC. None when the mode stays the same for
        ``horizon_days`` days, so that a schedule that is always closed does not
        have to be searched forever.
        """
        start = self._local(instant).astimezone(timezone.utc)
        return next(self._changes(start, start + timedelta(days=horizon_days)), None)

    def day_timeline(self, day: date) -> list[tuple[datetime, datetime, str]]:
        """The whole local day as consecutive (start, end, mode) segments, gaps shown as closed.

        The datetimes are local and real: on the autumn night the second 03:00
        has fold=1. They share one tzinfo, and Python subtracts such datetimes by
        wall time, so convert them to UTC before measuring how long a segment is:
        02:00–05:00 lasts 2 hours on the spring day and 4 on the autumn one.

        The day starts at local midnight, taken with fold=0; in a zone whose
        clocks skip midnight (America/Havana in spring) that is the instant the
        clocks jump past it.
        """
        timeline = self._timelines.get(day)
        if timeline is None:
            if len(self._timelines) >= _TIMELINES_KEPT:
                self._timelines.clear()
            timeline = self._timelines[day] = tuple(self._work_out_timeline(day))
        return list(timeline)

    def _work_out_timeline(self, day: date) -> list[tuple[datetime, datetime, str]]:
        start = datetime.combine(day, time(), tzinfo=self.tz).astimezone(timezone.utc)
        end = datetime.combine(day + timedelta(days=1), time(), tzinfo=self.tz).astimezone(timezone.utc)
        segments = []
        segment_start, mode = start, self.mode_at(start)
        for change, new_mode in self._changes(start, end):
            segments.append((segment_start, change, mode))
            segment_start, mode = change, new_mode
        segments.append((segment_start, end, mode))
        return [(begin.astimezone(self.tz), finish.astimezone(self.tz), m) for begin, finish, m in segments]

    def _local(self, instant: datetime) -> datetime:
        if not isinstance(instant, datetime) or instant.utcoffset() is None:
            raise ValueError(f"{instant!r} is not a timezone-aware datetime; the schedule cannot place it in time")
        return instant.astimezone(self.tz)

    def _mode_at_local(self, local: datetime) -> str:
        minute = local.hour * 60 + local.minute
        for period in self.periods_on(local.date()):
            if period.start <= minute < period.end:
                return period.mode
        return "closed"

    def _boundaries_on(self, day: date) -> tuple[int, ...]:
        boundaries = self._exception_boundaries.get(day)
        return boundaries if boundaries is not None else self._weekly_boundaries[day.weekday()]

    def _changes(self, start: datetime, until: datetime) -> Iterator[tuple[datetime, str]]:
        """Each instant in (start, until) at which the mode changes, with the new mode; UTC in and out.

        Walks from one place where the mode could change to the next. Between two
        offset transitions the wall clock runs with real time, so the next such
        place is the earlier of two: the next period boundary on the wall clock
        (midnight included), turned into UTC with the offset in force now, and the
        next transition, where the wall clock jumps. Using the offset in force
        avoids asking which wall times exist or happen twice: a boundary the clocks
        skip is never reached, and a repeated one is reached twice.
        """
        transitions = _transitions_between(self.tz, start, until)
        now, local = start, start.astimezone(self.tz)
        mode = self._mode_at_local(local)
        while True:
            boundaries = self._boundaries_on(local.date())
            boundary = boundaries[bisect_right(boundaries, local.hour * 60 + local.minute)]
            wall = datetime.combine(local.date(), time()) + timedelta(minutes=boundary)
            candidate = (wall - local.utcoffset()).replace(tzinfo=timezone.utc)
            jump = bisect_right(transitions, now)
            if jump < len(transitions) and transitions[jump] < candidate:
                candidate = transitions[jump]
            if candidate >= until:
                return
            now, local = candidate, candidate.astimezone(self.tz)
            new_mode = self._mode_at_local(local)
            if new_mode != mode:
                yield now, new_mode
                mode = new_mode


def _transitions_between(zone: tzinfo, start: datetime, until: datetime) -> tuple[datetime, ...]:
    """The UTC instants in (start, until) at which the zone's UTC offset changes."""
    found: list[datetime] = []
    for year in range(start.year, until.year + 1):
        transitions = _transitions_in_year(zone, year)
        found += transitions[bisect_right(transitions, start) : bisect_left(transitions, until)]
    return tuple(found)


@lru_cache(maxsize=32)
def _transitions_in_year(zone: tzinfo, year: int) -> tuple[datetime, ...]:
    """The UTC instants in (1 January of ``year``, 1 January of the next] at which the offset changes.

    zoneinfo keeps its transition table private, so the offset is compared hour by
    hour and each change narrowed down to the second (tz data has no finer
    transitions). That would miss two transitions less than an hour apart, which no
    zone has. It takes a few milliseconds, once per zone and year.
    """
    step = timedelta(hours=1)
    moment = datetime(year, 1, 1, tzinfo=timezone.utc)
    year_end = datetime(year + 1, 1, 1, tzinfo=timezone.utc)
    offset = moment.astimezone(zone).utcoffset()
    found = []
    while moment < year_end:
        later = moment + step
        later_offset = later.astimezone(zone).utcoffset()
        if later_offset != offset:
            found.append(_first_second_with_new_offset(zone, moment, later, offset))
            offset = later_offset
        moment = later
    return tuple(found)


def _first_second_with_new_offset(zone: tzinfo, before: datetime, after: datetime, old: timedelta) -> datetime:
    # Invariant: ``before`` still has the old offset, ``after`` no longer does.
    second = timedelta(seconds=1)
    while after - before > second:
        middle = before + (after - before) // 2 // second * second
        if middle.astimezone(zone).utcoffset() == old:
            before = middle
        else:
            after = middle
    return after
