"""A branch's hours kept centrally, and the hours stream that serves them in the Kirkanta shape.

The hours are checked with the branch's own rules (device/schedule.py) before they
are stored, so the central service never serves hours that a branch would refuse.
Setting a weekday or a date replaces what it had; a day with no periods is closed.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, delete, insert, select

from central import schema
from device.schedule import MODES, WEEKDAYS, Period, Schedule, ScheduleError, check_periods, parse_hhmm
from sync.kirkanta import KirkantaError, parse_schedules, schedule_item

#: The longest range one request may ask for; a branch asks for about 60 days.
MAX_DAYS = 400


def branch_schedule(connection: Connection, branch: str) -> Schedule | None:
    """The branch's hours as kept here, or None when none are kept (the branch keeps its own)."""
    tz = connection.execute(select(schema.branches.c.timezone).where(schema.branches.c.id == branch)).scalar_one_or_none()
    if tz is None:
        raise HoursError(f"there is no branch {branch!r}")
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


class HoursError(ValueError):
    """Hours that cannot be stored as given; the message names the day and the period."""


_PERIOD = re.compile(r"\s*([0-9:]+)\s*[-–]\s*([0-9:]+)\s+([a-z_-]+)\s*")
NOTE_MAX_LENGTH = 200
#: A closed day, as typed on the console.
CLOSED = "closed"


def read_periods(text: str, label: str) -> tuple[Period, ...]:
    """Periods typed as ``"07:00-10:00 self_service, 10:00-20:00 staffed"``; ``"closed"`` (or nothing) for none."""
    if text.strip() in ("", CLOSED):
        return ()
    periods = []
    for part in text.split(","):
        match = _PERIOD.fullmatch(part)
        if match is None:
            raise HoursError(f"{label}: {part.strip()[:40]!r} is not a period; write it as HH:MM-HH:MM MODE, "
                             f"MODE one of {', '.join(MODES)}, periods separated by commas")
        mode = match[3].replace("-", "_")
        try:
            periods.append(Period(parse_hhmm(match[1]), parse_hhmm(match[2], end=True), mode))
        except ScheduleError as exc:
            raise HoursError(f"{label}: {exc}") from None
    return _checked(periods, label)


def set_weekday(connection: Connection, branch: str, weekday: int, periods) -> None:
    """Replace one weekday of the branch's weekly pattern (0 is Monday); no periods is closed."""
    if weekday not in range(7):
        raise HoursError(f"weekday {weekday!r} is not one of 0 (Monday) … 6 (Sunday)")
    checked = _checked(periods, WEEKDAYS[weekday])
    _require_branch(connection, branch)
    table = schema.weekly_hours
    connection.execute(delete(table).where(table.c.branch_id == branch, table.c.weekday == weekday))
    if checked:
        connection.execute(insert(table), [
            {"branch_id": branch, "weekday": weekday, "start_minute": p.start, "end_minute": p.end, "mode": p.mode} for p in checked
        ])


def set_day(connection: Connection, branch: str, day: date, periods, note: str = "") -> None:
    """Give one date its own hours instead of its weekday's; no periods is closed all day."""
    checked = _checked(periods, day.isoformat())
    if len(note) > NOTE_MAX_LENGTH or not note.isprintable():
        raise HoursError(f"{day}: a note must be at most {NOTE_MAX_LENGTH} printable characters")
    _require_branch(connection, branch)
    table = schema.hours_exceptions
    connection.execute(delete(table).where(table.c.branch_id == branch, table.c.day == day))
    rows = [{"start_minute": p.start, "end_minute": p.end, "mode": p.mode} for p in checked]
    connection.execute(insert(table), [{"branch_id": branch, "day": day, "note": note or None} | row
                                       for row in rows or [{"start_minute": None, "end_minute": None, "mode": None}]])


def clear_day(connection: Connection, branch: str, day: date) -> bool:
    """Let a date follow its weekday again; whether it had its own hours."""
    table = schema.hours_exceptions
    return bool(connection.execute(delete(table).where(table.c.branch_id == branch, table.c.day == day)).rowcount)


def import_kirkanta(connection: Connection, branch: str, document: str | bytes | dict) -> dict[date, tuple[Period, ...]]:
    """Store a Kirkanta schedules answer as the branch's dated hours; all of it or, on any fault, none."""
    _require_branch(connection, branch)
    try:
        days = parse_schedules(document)
    except KirkantaError as exc:
        raise HoursError(str(exc)) from None
    for day, periods in days.items():
        set_day(connection, branch, day, periods, note="Kirkanta")
    return days


def _checked(periods, label: str) -> tuple[Period, ...]:
    try:
        return check_periods(periods, label)
    except ScheduleError as exc:
        raise HoursError(str(exc)) from None


def _require_branch(connection: Connection, branch: str) -> None:
    if connection.execute(select(schema.branches.c.id).where(schema.branches.c.id == branch)).first() is None:
        raise HoursError(f"there is no branch {branch!r}; add it first with: omaovi central branch-add")


def hours_items(schedule: Schedule, first: date, last: date) -> list[dict]:
    return [schedule_item(day, schedule.periods_on(day)) for day in _days(first, last)]


def _days(first: date, last: date):
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)
