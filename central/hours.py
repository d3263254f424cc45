"""The hours stream: a branch's weekly pattern and dated exceptions, in the Kirkanta shape."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from central import schema
from device.schedule import Period, Schedule
from sync.kirkanta import schedule_item

#: The longest range one request may ask for; a branch asks for about 60 days.
MAX_DAYS = 400


def branch_schedule(connection: Connection, branch: str) -> Schedule | None:
    """The branch's hours as kept here, or None when none are kept (the branch keeps its own)."""
    tz = connection.execute(select(schema.branches.c.timezone).where(schema.branches.c.id == branch)).scalar_one()
    weekly: dict[int, list[Period]] = {}
    for row in connection.execute(select(schema.weekly_hours).where(schema.weekly_hours.c.branch_id == branch)):
        weekly.setdefault(row.weekday, []).append(Period(row.start_minute, row.end_minute, row.mode))
    exceptions: dict[date, list[Period]] = {}
    for row in connection.execute(select(schema.hours_exceptions).where(schema.hours_exceptions.c.branch_id == branch)):
        periods = exceptions.setdefault(row.day, [])
        if row.start_minute is not None:
            periods.append(Period(row.start_minute, row.end_minute, row.mode))
    if not weekly and not exceptions:
        return None
    return Schedule({day: tuple(p) for day, p in weekly.items()}, {day: tuple(p) for day, p in exceptions.items()}, ZoneInfo(tz))


def hours_items(schedule: Schedule, first: date, last: date) -> list[dict]:
    return [schedule_item(day, schedule.periods_on(day)) for day in _days(first, last)]


def _days(first: date, last: date):
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)
