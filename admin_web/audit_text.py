"""The audit log as staff read it: what changed, in the page's language, with door names.

The log keeps each entry's detail as the action wrote it (English keys, the
schedule's own notation "07:00–20:00 self_service", door ids), which is what a
script or an investigation wants. The audit page turns it into lines such as
"Tiistai: 8.00–16.00 palveluaika → 9.00–16.00 palveluaika", showing only what
changed. An action this module does not know is still shown, key by key.
"""

from __future__ import annotations

import re
from datetime import date

from admin_web.announcements import KIND_LABELS
from admin_web.hours_input import clock_text, weekday_name
from admin_web.i18n import MODE_LABELS, LANGUAGE_NAMES, gettext as _, label, local_datetime, role_label
from device.schedule import WEEKDAYS, parse_hhmm

#: How many days of a Kirkanta import the page lists before "and N more days".
IMPORT_DAYS_SHOWN = 10
_PERIOD = re.compile(r"([0-9]{2}:[0-9]{2})–([0-9]{2}:[0-9]{2}) ([a-z_]+)")
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def target_text(entry: dict, doors: dict[str, str]) -> str:
    """The door's name for a door action, a date the Finnish way for an exception day, else the target as written."""
    target = entry["target"] or ""
    if entry["action"].startswith("door.") and target in doors:
        return doors[target]
    try:
        return _day_text(target) if _ISO_DAY.fullmatch(target) else target
    except ValueError:  # shaped like a date but none, "2026-13-45"
        return target


def describe(entry: dict, doors: dict[str, str]) -> list[str]:
    """The entry's detail as lines of text, plus where the request came from."""
    detail = entry["detail"] or {}
    writer = _WRITERS.get("door" if entry["action"].startswith("door.") else entry["action"], _generic)
    try:
        lines = writer(detail)
    except (AttributeError, TypeError, ValueError, KeyError):
        lines = _generic(detail)  # a shape this version does not write (an older or a hand-made entry)
    if entry.get("address"):
        lines.append(_("from %(address)s", address=entry["address"]))
    return lines


def periods_text(periods: list[str] | None) -> str:
    """["07:00–12:00 self_service"] as "7.00–12.00 self-service"; [] is closed all day, None nothing at all."""
    if periods is None:
        return "—"
    if not periods:
        return _("Closed all day")
    return ", ".join(_period_text(period) for period in periods)


def _period_text(period: str) -> str:
    match = _PERIOD.fullmatch(period)
    if match is None:
        return period
    start, end = parse_hhmm(match[1]), parse_hhmm(match[2], end=True)
    return f"{clock_text(start)}–{clock_text(end)} {label(MODE_LABELS, match[3]).lower()}"


def _change(before: list[str] | None, after: list[str] | None) -> str:
    return f"{periods_text(before)} → {periods_text(after)}"


def _day_text(iso: str) -> str:
    day = date.fromisoformat(iso)
    return f"{day.day}.{day.month}.{day.year}"


def _note(detail: dict) -> list[str]:
    return [_("Note: %(note)s", note=detail["note"])] if detail.get("note") else []


def _weekly(detail: dict) -> list[str]:
    old, new = detail.get("old") or {}, detail.get("new") or {}
    return [
        f"{weekday_name(number)}: {_change(old.get(day) or [], new.get(day) or [])}"
        for number, day in enumerate(WEEKDAYS)
        if (day in old or day in new) and (old.get(day) or []) != (new.get(day) or [])
    ]


def _exception(detail: dict) -> list[str]:
    return _note(detail) + [_change(detail.get("old"), detail.get("new"))]


def _import(detail: dict) -> list[str]:
    lines = []
    if detail.get("first") and detail.get("last"):
        lines.append(_("%(count)d days, %(first)s–%(last)s", count=detail.get("days", 0),
                       first=_day_text(detail["first"]), last=_day_text(detail["last"])))
    changes = sorted((detail.get("changes") or {}).items())
    lines += [f"{_day_text(day)}: {_change(change.get('old'), change.get('new'))}" for day, change in changes[:IMPORT_DAYS_SHOWN]]
    if len(changes) > IMPORT_DAYS_SHOWN:
        lines.append(_("and %(count)d more days", count=len(changes) - IMPORT_DAYS_SHOWN))
    return lines


def _door(detail: dict) -> list[str]:
    return [_("Until %(time)s", time=local_datetime(detail["until"]))] if detail.get("until") else []


def _card(detail: dict) -> list[str]:
    until = [_("Until %(day)s", day=_day_text(detail["until"]))] if detail.get("until") else []
    return _note(detail) + until


def _patrons(detail: dict) -> list[str]:
    lines = [_("%(count)d patrons in the file", count=detail.get("count", 0))]
    if detail.get("replace"):
        lines.append(_("The whole patron list was replaced"))
    if detail.get("ageless"):
        lines.append(_("%(count)d without an age_ok_from date", count=detail["ageless"]))
    return lines


def _role(detail: dict) -> list[str]:
    return [_("Role: %(role)s", role=role_label(detail["role"]))] if detail.get("role") else []


def _announcements(detail: dict) -> list[str]:
    old, new = detail.get("old") or {}, detail.get("new") or {}
    lines = [
        f"{name}: {old.get(key, '—')} → {new.get(key, '—')} min"
        for key, name in (("first_minutes", _("First announcement")), ("every_minutes", _("Repeat interval")))
        if old.get(key) != new.get(key)
    ]
    old_texts, new_texts = old.get("texts") or {}, new.get("texts") or {}
    for kind, texts in new_texts.items():
        for lang, text in texts.items():
            if (old_texts.get(kind) or {}).get(lang) != text:
                lines.append(f"{label(KIND_LABELS, kind)}, {LANGUAGE_NAMES.get(lang, lang)}: “{text}”")
    return lines


def _nothing(detail: dict) -> list[str]:
    """The action's name and target say it all; the rest (a command's number) is for the device."""
    return []


def _generic(detail: dict) -> list[str]:
    return [f"{key}: {'—' if value is None else value}" for key, value in detail.items()]


_WRITERS = {
    "hours.weekly": _weekly,
    "hours.exception.add": _exception,
    "hours.exception.edit": _exception,
    "hours.exception.delete": _exception,
    "hours.import": _import,
    "door": _door,
    "pin_lockout.clear": _nothing,
    "cards.staff.add": _card,
    "cards.staff.remove": _card,
    "cards.block.add": _card,
    "cards.block.remove": _card,
    "cards.import": _patrons,
    "users.add": _role,
    "users.role": _role,
    "user.add": _role,
    "announcements.settings": _announcements,
}
