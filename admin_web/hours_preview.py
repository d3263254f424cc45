"""The coming days' hours as a timeline for the Hours page.

Bars are placed by real time (``branch_now.day_segments``), so the autumn day with
its repeated hour is 25 hours wide and the spring day 23: a bar is as long as the
doors really stay in that mode. The words beside each bar use the wall clock, as
the library's notices do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from admin_web.branch_now import day_fraction, day_segments
from admin_web.hours_input import clock_text
from device.schedule import MINUTES_PER_DAY, Schedule
from device.store import day_bounds

#: Where the timeline draws a faint line, in wall-clock hours.
TICK_HOURS = (6, 12, 18)


@dataclass(frozen=True)
class Bar:
    x: float  #: where the mode starts, as a fraction of the real day
    width: float
    mode: str
    text: str  #: "8.00–12.00", wall clock


@dataclass(frozen=True)
class PreviewDay:
    day: date
    hours: int  #: the day's real length: 23, 24 or 25
    bars: tuple[Bar, ...]
    ticks: tuple[float, ...]
    exception: dict | None  #: the exception_days row when the day has its own hours

    @property
    def open_bars(self) -> tuple[Bar, ...]:
        return tuple(bar for bar in self.bars if bar.mode != "closed")


def preview(schedule: Schedule, first: date, days: int, exceptions: dict[date, dict]) -> list[PreviewDay]:
    return [_day(schedule, day, exceptions.get(day)) for day in (first + timedelta(days=n) for n in range(days))]


def _day(schedule: Schedule, day: date, exception: dict | None) -> PreviewDay:
    start, end = day_bounds(day, schedule.tz)
    bars = tuple(
        Bar(segment.x, segment.width, segment.mode, f"{_wall(segment.start, day)}–{_wall(segment.end, day)}")
        for segment in day_segments(schedule, day)
    )
    ticks = tuple(day_fraction(schedule.tz, day, datetime.combine(day, time(hour), tzinfo=schedule.tz)) for hour in TICK_HOURS)
    return PreviewDay(day, round((end - start).total_seconds() / 3600), bars, ticks, exception)


def _wall(moment: datetime, day: date) -> str:
    """"8.00"; the midnight that ends the day is "24.00"."""
    return clock_text(MINUTES_PER_DAY if moment.date() != day else moment.hour * 60 + moment.minute)
