"""P5: the statistics a staff page asks for: a year by day, and a year by month.

``device.stats`` groups by hour or day; a month is the sum of its days, so the
by-month figure is the by-day query plus that sum, which is all a page would add.
Each run opens its own connection: a Store keeps a query's sums until the counters
change, and the schedule's days, and a run answered from those would measure
nothing but the cache.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from bench.report import Figure
from bench.timing import ratio, repeat, summary
from device.events import hour_text
from device.stats import FIELDS, summarize
from device.store import Store, day_bounds

MS = 100
TZ = ZoneInfo("Europe/Helsinki")


def run(ws) -> Figure:
    figure = Figure("P5", "statistics for a year", f"per day and per month <= {MS} ms (median)")
    database = ws.database()
    store = Store(database)
    end = date.today() - timedelta(days=1)
    start = end - timedelta(days=364)

    def year_by_day() -> list[dict]:
        fresh = Store(database, migrate=False)
        try:
            return summarize(fresh, TZ, start, end, "day")
        finally:
            fresh.close()

    try:
        days = summary(repeat(year_by_day, ws.scale.stats_runs))
        months = summary(repeat(lambda: by_month(year_by_day()), ws.scale.stats_runs))
        bare = summary(repeat(lambda: _bare_group_by_day(store, start, end), ws.scale.stats_runs))
        rows = len(year_by_day())
    finally:
        store.close()
    figure.values = {"by_day": days, "by_month": months, "days": rows, "baseline_sql_group_by_day": bare}
    figure.baseline = "bare SQL GROUP BY day (median)"
    figure.ratio = ratio(days["median_ms"], bare["median_ms"])
    figure.result = f"by day {days['median_ms']:.1f} ms, by month {months['median_ms']:.1f} ms"
    figure.passed = rows == 365 and days["median_ms"] <= MS and months["median_ms"] <= MS
    return figure


def by_month(day_rows: list[dict]) -> list[dict]:
    months: dict[str, dict] = defaultdict(lambda: dict.fromkeys(FIELDS[1:], 0))
    for row in day_rows:
        month = months[row["period"][:7]]
        for name in FIELDS[1:]:
            month[name] += row[name]
    return [{"period": period, **totals} for period, totals in months.items()]


def _bare_group_by_day(store: Store, start: date, end: date) -> list:
    """The counters summed per UTC day by SQLite alone: the least such a query can cost."""
    utc_start, _ = day_bounds(start, TZ)
    _, utc_end = day_bounds(end, TZ)
    return store.conn.execute(
        "SELECT substr(hour, 1, 10), metric, sum(count) FROM hourly_counts WHERE hour >= ? AND hour < ? GROUP BY 1, 2",
        (hour_text(utc_start), hour_text(utc_end)),
    ).fetchall()
