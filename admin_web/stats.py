"""The statistics page and its CSV download: visits, booth use, denials and open hours.

Figures come from device.stats, which reads the permanent hourly counters, so a
range older than the event retention still adds up. The CSV is for Excel on a
Finnish PC by default (``excel-fi``: ``;``, a decimal comma and a byte-order
mark); ``?dialect=rfc4180`` gives the ``,`` and ``.`` that ``omaovi central pull``
and ``omaovi stats --csv`` write (device/stats_csv.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from babel.dates import format_date
from flask import Blueprint, Response, render_template, request
from flask_babel import get_locale

from admin_web import branch, branch_now, charts, store
from admin_web.events import optional_day
from admin_web.i18n import REASON_LABELS, gettext as _, label, lazy_gettext as _l
from device import stats_csv
from device.stats import summarize, visits_by_hour_of_week

bp = Blueprint("stats", __name__)

BY = {"day": _l("Day"), "week": _l("Week"), "month": _l("Month")}
#: About three years: longer ranges take long on a Pi and are not what this page is for.
MAX_DAYS = 3 * 366

#: The table's and the CSV's columns: row key, heading, whether it is hours (decimals).
COLUMNS = (
    ("physical_visits", _l("Physical visits"), False),
    ("granted_taps", _l("Card taps granted"), False),
    ("visits_self_service", _l("Taps in self-service hours"), False),
    ("visits_staffed", _l("Taps in staffed hours"), False),
    ("booth_uses", _l("Booth uses"), False),
    ("booth_hours", _l("Booth hours"), True),
    ("denied", _l("Refused at the door"), False),
    ("self_service_open_hours", _l("Self-service hours"), True),
    ("staffed_open_hours", _l("Staffed hours"), True),
)
#: Hours the range still has to come; shown only then, apart from the hours that were open.
PLANNED_COLUMNS = (
    ("self_service_open_hours_planned", _l("Self-service hours still planned"), True),
    ("staffed_open_hours_planned", _l("Staffed hours still planned"), True),
)
#: Counted from a people counter at a door (see docs/door-extras.md), so shown only where one is.
TAILGATING_COLUMN = ("tailgating", _l("Tailgating"), False)
#: Closings at which people were still counted inside; shown where the Today page warns of them.
PEOPLE_LEFT_COLUMN = ("people_inside_after_close", _l("Closed with people inside"), False)


@dataclass(frozen=True)
class Choice:
    start: date
    end: date
    by: str


def parse_choice(args, today: date) -> tuple[Choice, list[str]]:
    """The range and grouping asked for (this month by day when nothing is), and what is wrong with them."""
    errors: list[str] = []
    start = optional_day(args.get("from"), _("From"), errors) or today.replace(day=1)
    end = optional_day(args.get("to"), _("To"), errors) or _month_end(start)
    by = args.get("by") or "day"
    if by not in BY:
        errors.append(_("Group by: choose day, week or month."))
        by = "day"
    if end < start:
        errors.append(_("To: the last day must not be before the first day."))
    elif (end - start).days >= MAX_DAYS:
        errors.append(_("The range is too long: choose at most three years."))
    return Choice(start, end, by), errors


@bp.route("/stats")
def index():
    choice, errors = parse_choice(request.args, _today())
    if errors:
        return render_template("stats/index.html", choice=choice, errors=errors, by_options=BY), 400
    rows = _rows(choice)
    columns = branch_columns(rows)
    totals = {key: sum(row[key] for row in rows) for key, _heading, _hours in columns}
    denials = _denials(rows)
    grid = visits_by_hour_of_week(store(), branch().config.tz, choice.start, choice.end)
    busiest = max(max(day) for day in grid)
    return render_template(
        "stats/index.html", choice=choice, errors=[], by_options=BY, rows=rows, totals=totals, columns=columns,
        chart=charts.stacked_bars(
            [row["short"] for row in rows],
            {"self_service": [row["visits_self_service"] for row in rows], "staffed": [row["visits_staffed"] for row in rows]},
            [row["label"] for row in rows],
        ),
        denials=[(reason, count, charts.share(count, denials[0][1])) for reason, count in denials],
        heat=[[(count, charts.heat_level(count, busiest)) for count in day] for day in grid],
        weekdays=[format_date(date(2026, 11, 23) + timedelta(days=i), "EEE", locale=str(get_locale())) for i in range(7)],
        hours_text=_decimal, csv_query={"from": choice.start.isoformat(), "to": choice.end.isoformat(), "by": choice.by},
        planned=sum(totals.get(key, 0) for key, _heading, _hours in PLANNED_COLUMNS),
        first_day=_first_day(), repeat_minutes=branch().config.policy.repeat_tap_minutes,
        counted_doors=[door.label for door in branch().config.doors if door.counter_in_pin is not None],
    )


@bp.route("/stats.csv")
def download():
    choice, errors = parse_choice(request.args, _today())
    if errors:
        return Response("\n".join(errors) + "\n", status=400, mimetype="text/plain")
    dialect = request.args.get("dialect") or "excel-fi"
    if dialect not in stats_csv.DIALECTS:
        return Response(_("Format: choose excel-fi or rfc4180.") + "\n", status=400, mimetype="text/plain")
    rows = _rows(choice)
    reasons = [reason for reason, _count in _denials(rows)]
    columns = branch_columns(rows)
    header = ([_("Period")] + [str(heading) for _key, heading, _hours in columns]
              + [_("Refused: %(reason)s", reason=label(REASON_LABELS, reason)) for reason in reasons])
    body = ([row["period"]] + [float(row[key]) if hours else row[key] for key, _heading, hours in columns]
            + [row["denials"].get(reason, 0) for reason in reasons] for row in rows)
    name = f"omaovi-{branch().config.branch}-{choice.start}-{choice.end}-{choice.by}.csv"
    return Response(
        stats_csv.write(header, body, dialect), mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def branch_columns(rows: list[dict]) -> tuple:
    """COLUMNS, the planned hours where the range has some still to come, and the
    people counts where this branch can count people: elsewhere tailgating cannot
    be seen and people left inside are a guess from the exit button, and a column
    of zeros would say "none" where the answer is "unknown"."""
    config = branch().config
    planned = any(row[key] for row in rows for key, _heading, _hours in PLANNED_COLUMNS)
    return (COLUMNS + (PLANNED_COLUMNS if planned else ())
            + ((TAILGATING_COLUMN,) if branch_now.has_people_counter(config) else ())
            + ((PEOPLE_LEFT_COLUMN,) if branch_now.counts_people(config) else ()))


def _rows(choice: Choice) -> list[dict]:
    rows = summarize(store(), branch().config.tz, choice.start, choice.end, choice.by)
    for row in rows:
        row["label"], row["short"] = _period_text(row["period"], choice.by)
    return rows


def _first_day() -> str:
    day = store().first_counted_hour().astimezone(branch().config.tz).date()
    return f"{day.day}.{day.month}.{day.year}"


def _denials(rows: list[dict]) -> list[tuple[str, int]]:
    """Refusals by reason over the whole range, the most common first."""
    totals: dict[str, int] = {}
    for row in rows:
        for reason, count in row["denials"].items():
            totals[reason] = totals.get(reason, 0) + count
    return sorted(totals.items(), key=lambda item: (-item[1], item[0]))


def _period_text(period: str, by: str) -> tuple[str, str]:
    """A period as the page shows it, in full (for the table) and short (under a bar)."""
    locale = str(get_locale())
    if by == "week":
        year, week = period.split("-W")
        return _("Week %(week)s/%(year)s", week=int(week), year=year), _("wk %(week)s", week=int(week))
    if by == "month":
        first = date.fromisoformat(period + "-01")
        return format_date(first, "LLLL yyyy", locale=locale).capitalize(), format_date(first, "LLL", locale=locale)
    day = date.fromisoformat(period)
    return f"{format_date(day, 'EEE', locale=locale)} {day.day}.{day.month}.{day.year}", f"{day.day}.{day.month}."


def _decimal(hours: float) -> str:
    """Hours on the page as in the Finnish CSV: "1,5"."""
    return stats_csv.cell(float(hours), "excel-fi")


def _today() -> date:
    return datetime.now(branch().config.tz).date()


def _month_end(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
