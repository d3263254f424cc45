"""Visit statistics by local hour or day, from the hourly counters.

Counters are kept per UTC hour; Finnish offsets are whole hours, so every UTC hour
is exactly one local hour and a local day is 23, 24 or 25 of them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from device.events import HOUR_FORMAT
from device.store import Store, day_bounds

#: Columns in the order the CLI, CSV and API show them.
FIELDS = (
    "period", "visits_self_service", "visits_staffed", "booth_uses", "staff_entries", "exits", "denied",
    "tailgating", "people_inside_after_close",
)
#: Counters shown under their own name.
_AS_IS = ("tailgating", "people_inside_after_close")
BY = ("hour", "day")


def summarize(store: Store, tz: ZoneInfo, start: date, end: date, by: str = "day") -> list[dict]:
    """One row per local hour or day from ``start`` to ``end`` inclusive, empty periods included."""
    if by not in BY:
        raise ValueError(f"by must be one of {', '.join(BY)}")
    if end < start:
        raise ValueError(f"the end date {end} is before the start date {start}")
    utc_start, _ = day_bounds(start, tz)
    _, utc_end = day_bounds(end, tz)
    rows: dict[str, dict] = {}
    for period in _periods(tz, utc_start, utc_end, by):
        rows[period] = {name: 0 for name in FIELDS[1:]} | {"period": period, "denials": defaultdict(int)}
    for counter in store.counts(utc_start, utc_end):
        local = datetime.strptime(counter["hour"], HOUR_FORMAT).replace(tzinfo=timezone.utc).astimezone(tz)
        row = rows[_label(local, by)]
        metric, count = counter["metric"], counter["count"]
        if metric in ("visit_self_service", "visit_staffed"):
            row[metric.replace("visit_", "visits_")] += count
        elif metric == "booth_use":
            row["booth_uses"] += count
        elif metric == "staff_entry":
            row["staff_entries"] += count
        elif metric == "exit":
            row["exits"] += count
        elif metric in _AS_IS:
            row[metric] += count
        elif metric.startswith("denied_"):
            row["denied"] += count
            row["denials"][metric.removeprefix("denied_")] += count
    return [row | {"denials": dict(row["denials"])} for row in rows.values()]


def _label(local: datetime, by: str) -> str:
    return local.date().isoformat() if by == "day" else local.isoformat(timespec="minutes")


def _periods(tz: ZoneInfo, utc_start: datetime, utc_end: datetime, by: str) -> list[str]:
    labels: list[str] = []
    moment = utc_start
    while moment < utc_end:
        label = _label(moment.astimezone(tz), by)
        if not labels or labels[-1] != label:
            labels.append(label)
        moment += timedelta(hours=1)
    return labels
