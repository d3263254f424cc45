"""The Hours page: the weekly pattern, dated exceptions, a Kirkanta import and a preview.

Staff, not only admins, change hours: closing for a holiday is desk work. The
device reloads the hours within two seconds of a change, so every form is checked
whole before anything is written, and every change is audited with the periods
before and after, so that "who changed the hours?" has an answer.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import wraps

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from admin_web import branch, branch_now, store
from admin_web.auth import log_action
from admin_web.hours_input import InputError, parse_day, read_periods, rows_from_form, rows_of, span_text, weekday_name
from admin_web.hours_preview import preview
from admin_web.i18n import gettext as _
from device.config import load_sections
from device.schedule import MODES, WEEKDAYS, Period, format_hhmm
from sync.kirkanta import NOTE_MAX_LENGTH, KirkantaError, parse_days, split

bp = Blueprint("hours", __name__, url_prefix="/hours")

PREVIEW_DAYS = 14
#: Past exceptions are history; the page shows only the latest few.
PAST_EXCEPTIONS_SHOWN = 10
#: A Kirkanta import brings every day of a year, so the list stops after a month or so.
UPCOMING_EXCEPTIONS_SHOWN = 31
#: Further ahead than this is more likely a mistyped year than a plan.
MAX_DAYS_AHEAD = 2 * 366
#: Blank rows under a day's periods, to type new ones into without JavaScript.
BLANK_ROWS = 2


def _today() -> date:
    return branch_now.utc_now().astimezone(branch().config.tz).date()


def _managed_centrally() -> bool:
    """Whether the central service owns the hours; read once per app, as the rest of the config is."""
    cache = current_app.extensions.setdefault("omaovi.hours", {})
    if "central" not in cache:
        central = load_sections(branch().config.path)[1].central
        cache["central"] = bool(central and central.hours_managed_centrally)
    return cache["central"]


def _local_edits(view):
    """Refuse a change to hours that the central service would overwrite at its next sync."""

    @wraps(view)
    def guarded(*args, **kwargs):
        if _managed_centrally():
            return _index_page(
                error=_("These hours are managed by the central service, so they cannot be changed here. Ask the "
                        "person who manages the consortium's hours to make the change."),
                status=403,
            )
        return view(*args, **kwargs)

    return guarded


def _detail(periods) -> list[str] | None:
    """Periods for the audit log, in the schedule's own notation."""
    if periods is None:
        return None
    return [f"{format_hhmm(p.start)}–{format_hhmm(p.end)} {p.mode}" for p in periods]


def _render(template: str, status: int = 200, **context):
    return render_template(f"hours/{template}", modes=MODES, weekday_name=weekday_name, span_text=span_text, **context), status


# -- the page ------------------------------------------------------------------
@bp.route("")
def index():
    shown_from = request.args.get("from", "").strip()
    if not shown_from:
        return _index_page()
    try:
        first = parse_day(shown_from, _("Show from"))
    except InputError as exc:
        return _index_page(preview_error=str(exc), preview_text=shown_from, status=400)
    return _index_page(first=first, preview_text=shown_from)


def _index_page(*, first: date | None = None, status: int = 200, **context):
    today = _today()
    first = first or today
    schedule = store().schedule(branch().config.tz)
    exceptions = store().exception_days()
    upcoming = [row for row in exceptions if row["date"] >= today]
    return _render(
        "index.html",
        status,
        today=today,
        central=_managed_centrally(),
        days=preview(schedule, first, PREVIEW_DAYS, {row["date"]: row for row in exceptions}),
        previous_from=first - timedelta(days=PREVIEW_DAYS),
        next_from=first + timedelta(days=PREVIEW_DAYS),
        weekly=[schedule.weekly.get(weekday, ()) for weekday in range(7)],
        upcoming=upcoming[:UPCOMING_EXCEPTIONS_SHOWN],
        more_upcoming=max(0, len(upcoming) - UPCOMING_EXCEPTIONS_SHOWN),
        past=[row for row in reversed(exceptions) if row["date"] < today][:PAST_EXCEPTIONS_SHOWN],
        **context,
    )


# -- the weekly pattern ----------------------------------------------------------
@bp.route("/weekly", methods=["GET", "POST"])
@_local_edits
def weekly():
    if request.method == "GET":
        current = store().schedule(branch().config.tz).weekly
        return _render("weekly.html", days=[rows_of(current.get(weekday, ()), BLANK_ROWS) for weekday in range(7)])
    days = [rows_from_form(request.form, f"day{weekday}") for weekday in range(7)]
    errors, new = [], {}
    for weekday, rows in enumerate(days):
        try:
            new[weekday] = read_periods(rows, weekday_name(weekday))
        except InputError as exc:
            errors.append(str(exc))
    if errors:
        return _render("weekly.html", 400, days=days, errors=errors)
    old = store().schedule(branch().config.tz).weekly
    with store().conn:
        store().set_weekly({weekday: periods for weekday, periods in new.items() if periods})
        # Only the days that changed: a Tuesday-only change is a Tuesday in the log.
        changed = [day for day in range(7) if tuple(old.get(day, ())) != tuple(new[day])]
        log_action(
            "hours.weekly",
            old={WEEKDAYS[day]: _detail(old.get(day, ())) for day in changed},
            new={WEEKDAYS[day]: _detail(new[day]) for day in changed},
        )
    flash(_("The weekly hours were saved. The doors follow them within a few seconds."), "ok")
    return redirect(url_for("hours.index"))


# -- dated exceptions --------------------------------------------------------------
def _exception(day: date) -> dict | None:
    found = store().exception_days(day, day)
    return found[0] if found else None


def _existing(text: str) -> dict:
    """The exception a URL names by its ISO date, or 404."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        abort(404)
    return _exception(day) or abort(404)


def _check_editable(day: date) -> None:
    today = _today()
    if day < today:
        raise InputError(_("Date: %(day)s has passed. Only today and later days can be changed.", day=_date_text(day)))
    if day > today + timedelta(days=MAX_DAYS_AHEAD):
        raise InputError(_("Date: %(day)s is more than two years ahead. Check the year.", day=_date_text(day)))


def _date_text(day: date) -> str:
    return f"{day.day}.{day.month}.{day.year}"


@bp.route("/exceptions/new", methods=["GET", "POST"])
@_local_edits
def add_exception():
    if request.method == "GET":
        return _render("exception.html", existing=None, date_text="", note="", closed=True, rows=rows_of((), 3))
    return _save_exception(None)


@bp.route("/exceptions/<day>", methods=["GET", "POST"])
@_local_edits
def edit_exception(day: str):
    existing = _existing(day)
    if request.method == "GET":
        return _render(
            "exception.html", existing=existing, date_text=_date_text(existing["date"]), note=existing["note"],
            closed=not existing["periods"], rows=rows_of(existing["periods"], BLANK_ROWS),
        )
    return _save_exception(existing)


def _save_exception(existing: dict | None):
    """Check the whole form, then set the day; ``existing`` is the row being edited, None for a new one."""
    form = request.form
    date_text = _date_text(existing["date"]) if existing else form.get("date", "")
    note = form.get("note", "").strip()
    closed = form.get("kind") != "open"
    rows = rows_from_form(form, "period")
    errors, day = [], None
    try:
        day = existing["date"] if existing else parse_day(date_text, _("Date"))
        _check_editable(day)
        if existing is None and _exception(day) is not None:
            raise InputError(_("Date: %(day)s already has its own hours. Change them from the list of exceptions.", day=_date_text(day)))
    except InputError as exc:
        errors.append(str(exc))
    if len(note) > NOTE_MAX_LENGTH:
        errors.append(_("Note: at most %(count)d characters.", count=NOTE_MAX_LENGTH))
    periods: tuple[Period, ...] = ()
    if closed and any(not row.blank and not row.remove for row in rows):
        errors.append(_("Hours: you chose “Closed all day” but also wrote times. Choose “Open at these times” to keep them."))
    if not closed:
        try:
            periods = read_periods(rows, _date_text(day) if day else _("Hours"))
            if not periods:
                errors.append(_("Hours: add at least one period, or choose “Closed all day”."))
        except InputError as exc:
            errors.append(str(exc))
    if errors:
        return _render("exception.html", 400, existing=existing, date_text=date_text, note=note, closed=closed, rows=rows, errors=errors)
    with store().conn:
        store().set_exceptions({day: periods}, note=note, source="local")
        log_action(
            "hours.exception.edit" if existing else "hours.exception.add", day.isoformat(),
            note=note, old=_detail(existing["periods"]) if existing else None, new=_detail(periods),
        )
    flash(_("The hours of %(day)s were saved.", day=_date_text(day)), "ok")
    return redirect(url_for("hours.index"))


@bp.route("/exceptions/<day>/delete", methods=["POST"])
@_local_edits
def delete_exception(day: str):
    existing = _existing(day)
    when = existing["date"]
    try:
        _check_editable(when)
    except InputError as exc:
        return _index_page(error=str(exc), status=400)
    with store().conn:
        store().delete_exception(when)
        log_action("hours.exception.delete", when.isoformat(), note=existing["note"], old=_detail(existing["periods"]), new=None)
    flash(_("The exception for %(day)s was removed. The weekly hours apply on that day again.", day=_date_text(when)), "ok")
    return redirect(url_for("hours.index"))


# -- Kirkanta import ---------------------------------------------------------------
@bp.route("/import", methods=["POST"])
@_local_edits
def import_kirkanta():
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _index_page(import_error=_("Choose the Kirkanta JSON file first."), status=400)
    try:
        days, notes = split(parse_days(upload.read()))
    except KirkantaError as exc:
        return _index_page(
            import_error=_("The file could not be imported, so nothing was changed."), import_detail=str(exc), status=400
        )
    if not days:
        return _index_page(import_error=_("The file has no days in it, so nothing was changed."), status=400)
    first, last = min(days), max(days)
    before = {row["date"]: row["periods"] for row in store().exception_days(first, last)}
    with store().conn:
        store().set_exceptions(days, note="Kirkanta", notes=notes, source="kirkanta")
        log_action(
            "hours.import", upload.filename, source="kirkanta", days=len(days), first=first.isoformat(), last=last.isoformat(),
            changes={
                day.isoformat(): {"old": _detail(before.get(day)), "new": _detail(periods)}
                for day, periods in sorted(days.items())
                if before.get(day) != periods
            },
        )
    flash(
        _("Imported the hours of %(count)d days, %(first)s–%(last)s.", count=len(days), first=_date_text(first), last=_date_text(last)),
        "ok",
    )
    return redirect(url_for("hours.index"))
