"""Opening hours from Kirkanta, the Finnish library directory (api.kirjastot.fi, v4).

The schedules endpoint returns one item per date, each with its service times:

    {"items": [{"date": "2026-11-23", "closed": false,
                "times": [{"from": "07:00", "to": "10:00", "status": 2}, ...]}]}

Status 0 is closed, 1 staffed and 2 self-service. A day closed all day has
``"closed": true`` and ``"times": null`` (or an empty list).

These hours decide when the doors open to a card alone, so the whole answer is
checked before any of it is used: one bad item rejects the lot, with a message
that names the item, its date and the field, and the branch keeps its old hours.
A day's ``info`` (the holiday's name, "Itsenäisyyspäivä") becomes the exception's
note, so staff see why the day is different; it is a text, or one text per
language when the request named none. Keys this module does not use ("day",
"period", ...) are ignored, so Kirkanta can add fields without breaking the sync.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from device.schedule import Period, ScheduleError, format_hhmm, parse_hhmm
from sync.json_input import decode_json

#: Kirkanta's service-time status codes and the modes they become.
STATUS_MODES = {0: "closed", 1: "staffed", 2: "self_service"}
_STATUS_OF = {mode: status for status, mode in STATUS_MODES.items()}
_STATUS_NAMES = "0 (closed), 1 (staffed), 2 (self-service)"

#: About ten years of days; far more than a sync asks for, and it bounds the work
#: a broken or hostile answer can cause.
MAX_ITEMS = 3700

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: Kirkanta writes the end of a day either way.
_END_OF_DAY = ("00:00", "24:00")
#: The note's language when ``info`` has one per language: the branch's staff read
#: Finnish first, and a Swedish-speaking branch's Kirkanta entry has Swedish.
_NOTE_LANGUAGES = ("fi", "sv", "en")
#: As long as a note typed on the Hours page may be.
NOTE_MAX_LENGTH = 200


class KirkantaError(ValueError):
    """An answer from Kirkanta that cannot be used; nothing in it has been applied."""


@dataclass(frozen=True)
class Day:
    """One date of the answer: its periods (empty when closed) and its note ("" without one)."""

    periods: tuple[Period, ...]
    note: str


def parse_schedules(data: str | bytes | dict) -> dict[date, tuple[Period, ...]]:
    """The periods per date, for a caller that keeps no notes; see ``parse_days``."""
    return split(parse_days(data))[0]


def split(days: dict[date, Day]) -> tuple[dict[date, tuple[Period, ...]], dict[date, str]]:
    """The periods and the notes per date, as ``Store.set_exceptions`` takes them."""
    return {day: found.periods for day, found in days.items()}, {day: found.note for day, found in days.items() if found.note}


def parse_days(data: str | bytes | dict) -> dict[date, Day]:
    """Turn a schedules answer into periods and a note per date, ready to be schedule exceptions.

    Accepts the raw body or already decoded JSON. A closed day has no periods.
    Raises KirkantaError for anything that is not a well-formed schedule.
    """
    document = decode_json(data, KirkantaError) if isinstance(data, (str, bytes, bytearray)) else data
    if not isinstance(document, dict):
        raise KirkantaError(f"expected a JSON object with \"items\", got {_show(document)}")
    if "items" not in document:
        raise KirkantaError("items: missing")
    items = document["items"]
    if not isinstance(items, list):
        raise KirkantaError(f"items: expected a list, got {_show(items)}")
    if len(items) > MAX_ITEMS:
        raise KirkantaError(f"items: {len(items)} days is more than the {MAX_ITEMS} allowed")

    days: dict[date, Day] = {}
    first_index: dict[date, int] = {}
    for index, item in enumerate(items):
        day, found = _parse_item(item, f"items[{index}]")
        if day in days:
            raise KirkantaError(f"items[{index}] ({day}).date: the same date as items[{first_index[day]}]")
        days[day] = found
        first_index[day] = index
    return days


def schedule_item(day: date, periods: tuple[Period, ...]) -> dict:
    """One date in the schedules shape, as the central service serves it: the inverse of parsing it."""
    times = [{"from": format_hhmm(p.start), "to": format_hhmm(p.end), "status": _STATUS_OF[p.mode]} for p in periods if p.mode != "closed"]
    return {"date": day.isoformat(), "closed": not times, "times": times or None}


def _parse_item(item: Any, where: str) -> tuple[date, Day]:
    if not isinstance(item, dict):
        raise KirkantaError(f"{where}: expected an object, got {_show(item)}")
    day = _parse_date(_required(item, "date", where), f"{where}.date")
    where = f"{where} ({day})"

    closed = _required(item, "closed", where)
    if not isinstance(closed, bool):
        raise KirkantaError(f"{where}.closed: expected true or false, got {_show(closed)}")
    times = item.get("times")
    if times is None:
        times = []
    if not isinstance(times, list):
        raise KirkantaError(f"{where}.times: expected a list or null, got {_show(times)}")

    periods = [_parse_time(entry, f"{where}.times[{number}]") for number, entry in enumerate(times)]
    _check_overlaps(periods, where)
    note = _parse_note(item.get("info"), f"{where}.info")
    if closed:
        for number, period in enumerate(periods):
            if period.mode != "closed":
                raise KirkantaError(f"{where}.times[{number}]: {_span(period)} is {period.mode} on a day marked closed")
        return day, Day((), note)
    return day, Day(tuple(sorted(periods)), note)


def _parse_note(info: Any, where: str) -> str:
    """``"Joulupäivä"`` or ``{"fi": "Joulupäivä", "sv": "Juldagen"}`` as one line of text; "" for none."""
    if isinstance(info, dict):
        texts = {language: text for language, text in info.items() if isinstance(text, str) and text.strip()}
        info = next((texts[language] for language in _NOTE_LANGUAGES if language in texts), next(iter(texts.values()), None))
    if info is None:
        return ""
    if not isinstance(info, str):
        raise KirkantaError(f"{where}: expected a text, an object of texts by language, or null, got {_show(info)}")
    text = " ".join(info.split())
    return text if len(text) <= NOTE_MAX_LENGTH else text[: NOTE_MAX_LENGTH - 1] + "…"


def _parse_date(value: Any, where: str) -> date:
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise KirkantaError(f"{where}: {_show(value)} is not a date (expected YYYY-MM-DD)")


def _parse_time(entry: Any, where: str) -> Period:
    if not isinstance(entry, dict):
        raise KirkantaError(f"{where}: expected an object, got {_show(entry)}")
    start = _parse_clock(_required(entry, "from", where), f"{where}.from", end=False)
    end = _parse_clock(_required(entry, "to", where), f"{where}.to", end=True)
    status = _required(entry, "status", where)
    if type(status) is not int or status not in STATUS_MODES:
        raise KirkantaError(f"{where}.status: {_show(status)} is not one of {_STATUS_NAMES}")
    if end <= start:
        raise KirkantaError(f"{where}.to: {format_hhmm(end)} is not after from {format_hhmm(start)}")
    return Period(start, end, STATUS_MODES[status])


def _parse_clock(value: Any, where: str, *, end: bool) -> int:
    if end and value in _END_OF_DAY:
        return 24 * 60
    try:
        return parse_hhmm(value)
    except ScheduleError:
        expected = "HH:MM, 00:00 or 24:00 for the end of the day" if end else "HH:MM"
        raise KirkantaError(f"{where}: {_show(value)} is not a time (expected {expected})") from None


def _required(mapping: dict, key: str, where: str) -> Any:
    if key not in mapping:
        raise KirkantaError(f"{where}.{key}: missing")
    return mapping[key]


def _check_overlaps(periods: list[Period], where: str) -> None:
    numbered = sorted((period, number) for number, period in enumerate(periods))
    for (before, first), (after, second) in zip(numbered, numbered[1:]):
        if after.start < before.end:
            raise KirkantaError(
                f"{where}.times[{second}]: {_span(after)} overlaps times[{first}] {_span(before)}"
            )


def _span(period: Period) -> str:
    return f"{format_hhmm(period.start)}–{format_hhmm(period.end)}"


def _show(value: Any) -> str:
    """A value as it looked in the JSON, cut short so one huge field cannot flood the log."""
    shown = json.dumps(value, ensure_ascii=False, default=repr)
    return shown if len(shown) <= 60 else shown[:57] + "..."
