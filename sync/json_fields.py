"""Checking the fields of a JSON document from outside, one field at a time.

Used on both sides of the central protocol: by the branch on the central service's
answers (sync/central_parse.py) and by the central service on the branches' event
batches. Each check names the place (``items[3].valid_until``), says what was
expected and shows what was there, cut short, so one message is enough to find the
problem; a card key is shown only as the wrong value it is, never a card number.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Any

MAX_TEXT_LENGTH = 500
_CARD_KEY = re.compile(r"[0-9a-f]{64}")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class FieldError(ValueError):
    """A document with a missing or wrong field; the message says which and why."""


def required(item: dict, key: str, where: str) -> Any:
    if key not in item:
        raise FieldError(f"{where + '.' if where else ''}{key}: missing")
    return item[key]


def card_key(item: dict, where: str) -> str:
    value = required(item, "card_key", where)
    if not isinstance(value, str) or not _CARD_KEY.fullmatch(value):
        raise FieldError(f"{where}.card_key: {show(value)} is not 64 lowercase hex digits")
    return value


def boolean(item: dict, key: str, where: str) -> bool:
    value = required(item, key, where)
    if not isinstance(value, bool):
        raise FieldError(f"{where}.{key}: expected true or false, got {show(value)}")
    return value


def optional_boolean(item: dict, key: str, where: str) -> bool:
    value = item.get(key, False)
    if not isinstance(value, bool):
        raise FieldError(f"{where}.{key}: expected true or false, got {show(value)}")
    return value


def text(item: dict, key: str, where: str) -> str:
    value = required(item, key, where)
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT_LENGTH:
        raise FieldError(f"{where}.{key}: expected a non-empty string of at most {MAX_TEXT_LENGTH} characters, got {show(value)}")
    return value


def optional_text(item: dict, key: str, where: str) -> str | None:
    if required(item, key, where) is None:
        return None
    return text(item, key, where)


def optional_date(item: dict, key: str, where: str) -> date | None:
    value = required(item, key, where)
    if value is None:
        return None
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise FieldError(f"{where}.{key}: {show(value)} is not a date (expected YYYY-MM-DD or null)")


def instant(item: dict, key: str, where: str) -> datetime:
    value = required(item, key, where)
    moment = None
    if isinstance(value, str) and "T" in value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
    if moment is None or moment.tzinfo is None:
        raise FieldError(f"{where}.{key}: {show(value)} is not an ISO 8601 time with an offset, such as 2026-11-23T14:00:00+02:00")
    return moment


def show(value: Any) -> str:
    """A value as it looked in the JSON, cut short so one huge field cannot flood the log."""
    shown = json.dumps(value, ensure_ascii=False, default=repr)
    return shown if len(shown) <= 60 else shown[:57] + "..."
