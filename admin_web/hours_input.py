"""Reading hours the way staff type them, with mistakes explained in the page's language.

Finnish staff write "8.00", others "08:00" or just "8"; all three mean the same.
``device.schedule`` stays the judge of what a valid day is (``parse_hhmm``,
``check_periods``), but its messages are English and meant for logs, so when it
refuses a day this module finds the row at fault and says, naming the day, what
is wrong and how to write it instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from babel.dates import get_day_names
from flask_babel import get_locale

from admin_web.i18n import gettext as _
from device.schedule import MODES, Period, ScheduleError, check_periods, parse_hhmm

_CLOCK = re.compile(r"([0-9]{1,2})(?:[.:]([0-9]{2}))?")
_FINNISH_DATE = re.compile(r"([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{4})")
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


class InputError(ValueError):
    """A field the staff member must fix; the message is already translated."""


def weekday_name(weekday: int) -> str:
    """"Maanantai", "Måndag", "Monday": capitalised, because it starts a message or a heading."""
    name = get_day_names("wide", context="stand-alone", locale=str(get_locale()))[weekday]
    return name[:1].upper() + name[1:]


def clock_text(minutes: int) -> str:
    """Minutes after midnight the Finnish way: "8.00", and "24.00" for the end of the day."""
    return f"{minutes // 60}.{minutes % 60:02d}"


def span_text(period: Period) -> str:
    return f"{clock_text(period.start)}–{clock_text(period.end)}"


def parse_clock(text: str, label: str, *, end: bool) -> int:
    """"8", "8.00", "08:00" as minutes after midnight; "24.00" only as an end."""
    match = _CLOCK.fullmatch(text.strip())
    if match is not None:
        try:
            return parse_hhmm(f"{int(match[1]):02d}:{match[2] or '00'}", end=end)
        except ScheduleError:
            if not end and int(match[1]) == 24 and not int(match[2] or 0):
                raise InputError(_("%(day)s: 24.00 can only end a period, not start one.", day=label)) from None
    raise InputError(
        _("%(day)s: “%(text)s” is not a time. Write it as 8.00, 08:00 or 8 (from 0.00 to 24.00).", day=label, text=text.strip())
    )


def parse_day(text: str, field: str) -> date:
    """A date written 24.12.2026 or 2026-12-24; ``field`` names the input in the message."""
    text = text.strip()
    finnish, iso = _FINNISH_DATE.fullmatch(text), _ISO_DATE.fullmatch(text)
    try:
        if finnish:
            return date(int(finnish[3]), int(finnish[2]), int(finnish[1]))
        if iso:
            return date(int(iso[1]), int(iso[2]), int(iso[3]))
    except ValueError:
        pass
    if not text:
        raise InputError(_("%(field)s: enter a date, such as 24.12.2026.", field=field))
    raise InputError(_("%(field)s: “%(text)s” is not a date. Write it as 24.12.2026 or 2026-12-24.", field=field, text=text))


@dataclass
class Row:
    """One period as the form shows it: the text typed, kept as typed so a refused form comes back unchanged."""

    start: str = ""
    end: str = ""
    mode: str = "self_service"
    remove: bool = False
    error: bool = False

    @classmethod
    def of(cls, period: Period) -> Row:
        return cls(clock_text(period.start), clock_text(period.end), period.mode)

    @property
    def blank(self) -> bool:
        return not self.start.strip() and not self.end.strip()


def rows_of(periods: tuple[Period, ...], blanks: int = 2) -> list[Row]:
    """A day's periods as form rows, plus empty rows to type new periods into."""
    return [Row.of(period) for period in periods] + [Row() for _blank in range(blanks)]


def rows_from_form(form, prefix: str) -> list[Row]:
    """The rows posted as ``PREFIX-N-start``, ``-end``, ``-mode`` and ``-remove``, N counting from 0."""
    rows = []
    while f"{prefix}-{len(rows)}-start" in form:
        field = f"{prefix}-{len(rows)}"
        rows.append(
            Row(
                form.get(f"{field}-start", ""), form.get(f"{field}-end", ""), form.get(f"{field}-mode", ""),
                remove=bool(form.get(f"{field}-remove")),
            )
        )
    return rows


def read_periods(rows: list[Row], label: str) -> tuple[Period, ...]:
    """The day's checked periods. Removed and empty rows are skipped.

    On a mistake the row at fault gets ``error`` set and InputError names the
    day: "Monday: 12.00–14.00 overlaps 13.00–15.00".
    """
    pairs = []
    for row in rows:
        if row.remove or row.blank:
            continue
        try:
            if not row.start.strip() or not row.end.strip():
                raise InputError(_("%(day)s: a period needs both a start and an end time.", day=label))
            period = Period(parse_clock(row.start, label, end=False), parse_clock(row.end, label, end=True), row.mode)
        except InputError:
            row.error = True
            raise
        pairs.append((period, row))
    try:
        return check_periods([period for period, _row in pairs], label)
    except ScheduleError:
        row, message = _fault(pairs, label)
        row.error = True
        raise InputError(message) from None


def _fault(pairs: list[tuple[Period, Row]], label: str) -> tuple[Row, str]:
    """Which row check_periods refused, and why, in words for staff."""
    for period, row in pairs:
        if period.mode not in MODES:
            return row, _("%(day)s: choose staffed, self-service or closed for %(span)s.", day=label, span=span_text(period))
        if period.end < period.start:
            return row, _("%(day)s: %(span)s ends before it starts", day=label, span=span_text(period))
        if period.end == period.start:
            return row, _("%(day)s: %(span)s starts and ends at the same time", day=label, span=span_text(period))
    ordered = sorted(pairs, key=lambda pair: pair[0])
    for (before, _row), (after, row) in zip(ordered, ordered[1:]):
        if after.start < before.end:
            return row, _("%(day)s: %(first)s overlaps %(second)s", day=label, first=span_text(before), second=span_text(after))
    raise AssertionError("check_periods refused periods that have no fault this module knows of")
