"""Visit statistics by local hour, day, ISO week or month, from the hourly counters.

Counters are kept per UTC hour; Finnish offsets are whole hours, so every UTC hour
is exactly one local hour and a local day is 23, 24 or 25 of them. Booth hours come
from the ``booth_minutes`` counter (each reservation counted at its first use), so
they outlive the raw events like every other figure.

Open hours are measured with the hours that were in force on each day (the store
keeps the weekly pattern's versions, device/hours_history.py), so editing the hours
never changes a past figure, and only from the branch's first day (the database's
first opening, or its earliest counter if older). Hours still to come in a period
are not open hours yet: they are reported apart, as planned.

Granted taps are not visits: a patron who taps three times in five minutes came
once, and a people counter sees everyone who came in. ``physical_visits`` counts
each person once: the counter's entries at a door that has one, elsewhere the
granted taps less the repeats of one card within ``[policy] repeat_tap_minutes``
(the controller marks those, device/visits.py).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from device.events import BOOTH_MINUTES, HOUR_FORMAT, NOT_A_VISIT, PEOPLE_IN, PIN_LOCKOUT
from device.hours_history import HoursHistory
from device.store import Store, day_bounds

#: Columns in the order the CLI, CSV and API show them.
FIELDS = (
    "period", "physical_visits", "granted_taps", "visits_self_service", "visits_staffed", "booth_uses", "booth_hours",
    "staff_entries", "exits", "denied", "pin_lockouts", "self_service_open_hours", "staffed_open_hours",
    "self_service_open_hours_planned", "staffed_open_hours_planned", "tailgating", "people_inside_after_close",
)
#: Figures in hours (with decimals); the rest are counts.
HOURS_FIELDS = ("booth_hours", "self_service_open_hours", "staffed_open_hours",
                "self_service_open_hours_planned", "staffed_open_hours_planned")
BY = ("hour", "day", "week", "month")

#: Counter name -> the column it adds to.
_COLUMNS = {
    "visit_self_service": "visits_self_service",
    "visit_staffed": "visits_staffed",
    "booth_use": "booth_uses",
    BOOTH_MINUTES: BOOTH_MINUTES,
    "staff_entry": "staff_entries",
    "exit": "exits",
    "tailgating": "tailgating",
    "people_inside_after_close": "people_inside_after_close",
    PIN_LOCKOUT: "pin_lockouts",
    NOT_A_VISIT: NOT_A_VISIT,
    PEOPLE_IN: PEOPLE_IN,
}
_OPEN_COLUMNS = {"self_service": "self_service_open_hours", "staffed": "staffed_open_hours"}
_PLANNED = "_planned"
_HOUR = timedelta(hours=1)


def summarize(
    store: Store, tz: ZoneInfo, start: date, end: date, by: str = "day", now: datetime | None = None
) -> list[dict]:
    """One row per local period from ``start`` to ``end`` inclusive, empty periods included.

    Each row also has ``denials``, the denied taps by reason. A week or month
    cut by the range counts only its days inside the range. Open hours after
    ``now`` (the wall clock) go to the ``…_planned`` columns.
    """
    if by not in BY:
        raise ValueError(f"by must be one of {', '.join(BY)}")
    if end < start:
        raise ValueError(f"the end date {end} is before the start date {start}")
    periods = _periods(tz, start, end, by)
    rows = {
        period: {name: 0 for name in FIELDS[1:]}
        | {"period": period, BOOTH_MINUTES: 0, NOT_A_VISIT: 0, PEOPLE_IN: 0, "denials": defaultdict(int)}
        for period, _, _ in periods
    }
    for period, metric, count in store.period_totals(periods):
        row = rows[period]
        if metric in _COLUMNS:
            row[_COLUMNS[metric]] += count
        elif metric.startswith("denied_"):
            row["denied"] += count
            row["denials"][metric.removeprefix("denied_")] += count
    first_day = store.first_counted_hour().astimezone(tz).date()
    _add_open_hours(rows, store.hours_history(tz), max(start, first_day), end, by, now or datetime.now(timezone.utc))
    return [_finish(row) for row in rows.values()]


def visits_by_hour_of_week(store: Store, tz: ZoneInfo, start: date, end: date) -> list[list[int]]:
    """Granted entrance taps (self-service and staffed) per local weekday (Monday first) and hour, a 7 × 24 grid."""
    utc_start, _ = day_bounds(start, tz)
    _, utc_end = day_bounds(end, tz)
    grid = [[0] * 24 for _ in range(7)]
    for counter in store.counts(utc_start, utc_end):
        if counter["metric"] in ("visit_self_service", "visit_staffed"):
            local = _local_hour(counter["hour"], tz)
            grid[local.weekday()][local.hour] += counter["count"]
    return grid


def label(local: datetime, by: str) -> str:
    """The period a local instant falls in: "2026-11-25T14:00+02:00", "2026-11-25", "2026-W48" or "2026-11"."""
    if by == "hour":
        return local.isoformat(timespec="minutes")
    if by == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if by == "month":
        return f"{local.year}-{local.month:02d}"
    return local.date().isoformat()


def _local_hour(text: str, tz: ZoneInfo) -> datetime:
    return datetime.strptime(text, HOUR_FORMAT).replace(tzinfo=timezone.utc).astimezone(tz)


def _finish(row: dict) -> dict:
    minutes = row.pop(BOOTH_MINUTES)
    taps = row["visits_self_service"] + row["visits_staffed"]
    return row | {
        "granted_taps": taps,
        "physical_visits": taps - row.pop(NOT_A_VISIT) + row.pop(PEOPLE_IN),
        "booth_hours": round(minutes / 60, 2),
        "denials": dict(row["denials"]),
    } | {name: round(row[name], 2) for name in HOURS_FIELDS[1:]}


def _add_open_hours(rows: dict[str, dict], history: HoursHistory, start: date, end: date, by: str, now: datetime) -> None:
    """Add each open stretch of the hours in force that day to its periods, measured in
    real (UTC) time: up to ``now`` as open hours, after it as planned ones."""
    day = start
    while day <= end:
        schedule = history.on(day)
        for begin, finish, mode in schedule.day_timeline(day):
            if mode not in _OPEN_COLUMNS:
                continue
            begin, finish = begin.astimezone(timezone.utc), finish.astimezone(timezone.utc)
            # A stretch never leaves its day; only hours need it cut at each hour.
            cuts = _hour_cuts(begin, finish) if by == "hour" else [(begin, finish)]
            for piece_start, piece_end in cuts:
                row = rows[label(piece_start.astimezone(schedule.tz), by)]
                column = _OPEN_COLUMNS[mode]
                elapsed = min(max(now, piece_start), piece_end)
                row[column] += (elapsed - piece_start).total_seconds() / 3600
                row[column + _PLANNED] += (piece_end - elapsed).total_seconds() / 3600
        day += timedelta(days=1)


def _hour_cuts(begin: datetime, finish: datetime) -> list[tuple[datetime, datetime]]:
    cuts = []
    while begin < finish:
        next_hour = begin.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        cuts.append((begin, min(next_hour, finish)))
        begin = next_hour
    return cuts


def _periods(tz: ZoneInfo, start: date, end: date, by: str) -> list[tuple[str, datetime, datetime]]:
    """Each local period from ``start`` to ``end`` in time order, with the UTC instants
    it starts and ends at; a week or month cut by the range is cut there too.

    Worked out per period, not per counter row: parsing each row's hour took three
    quarters of a year's query (benchmark P5).
    """
    if by == "hour":
        moment, utc_end = day_bounds(start, tz)[0], day_bounds(end, tz)[1]
        hours = []
        while moment < utc_end:
            hours.append((label(moment.astimezone(tz), by), moment, moment + _HOUR))
            moment += _HOUR
        return hours
    periods: list[tuple[str, datetime, datetime]] = []
    day = start
    while day <= end:
        name = label(datetime.combine(day, time(), tz), by)
        day_start, day_end = day_bounds(day, tz)
        if periods and periods[-1][0] == name:
            periods[-1] = (name, periods[-1][1], day_end)
        else:
            periods.append((name, day_start, day_end))
        day += timedelta(days=1)
    return periods
