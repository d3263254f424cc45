"""Checking the central service's answers before any of them is used.

A patron page decides who gets in at night, so an answer is taken whole or not at
all: one bad item rejects the page, with a message naming the item, the field and
what was there, and the cache stays as it was. Keys this module does not know are
ignored, so the central service can add fields without breaking older devices.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from device.pins import VerifierError, pepper_verifier
from device.policy import Patron, Reservation
from sync.json_input import decode_json

RESERVATION_STATES = ("confirmed", "cancelled")
#: A cursor is opaque, but it is stored and sent back in a URL; this bounds it.
MAX_CURSOR_LENGTH = 2000
MAX_TEXT_LENGTH = 500
_CARD_KEY = re.compile(r"[0-9a-f]{64}")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class MalformedAnswer(ValueError):
    """An answer that does not follow the protocol; nothing in it has been applied."""


@dataclass(frozen=True)
class PatronPage:
    upserts: list[Patron]
    #: card_keys with ``"deleted": true``.
    deleted: list[str]
    cursor: str
    more: bool


@dataclass(frozen=True)
class ReservationPage:
    reservations: list[Reservation]
    cursor: str
    more: bool


@dataclass(frozen=True)
class EventAck:
    accepted: int
    duplicates: int


def decode(body: bytes) -> Any:
    """The body as JSON, or MalformedAnswer saying where it broke."""
    return decode_json(body, MalformedAnswer)


def parse_patron_page(body: bytes, fetched_at: datetime, pin_pepper: bytes | None = None) -> PatronPage:
    """One page of ``GET …/patrons``; every entry gets ``fetched_at`` as the time it was confirmed.

    ``pin_verifier`` is kept, peppered, only by a branch that asks for PINs (has a pepper).
    """
    items, cursor, more = _page(decode(body))
    upserts: list[Patron] = []
    deleted: list[str] = []
    for index, item in enumerate(items):
        where = f"items[{index}]"
        if not isinstance(item, dict):
            raise MalformedAnswer(f"{where}: expected an object, got {_show(item)}")
        card_key = _card_key(item, where)
        if _optional_bool(item, "deleted", where):
            deleted.append(card_key)
            continue
        upserts.append(
            Patron(
                card_key=card_key,
                self_service=_bool(item, "self_service", where),
                blocked_reason=_optional_text(item, "blocked_reason", where),
                valid_until=_optional_date(item, "valid_until", where),
                age_ok_from=_optional_date(item, "age_ok_from", where),
                staff=_bool(item, "staff", where),
                fetched_at=fetched_at,
                pin_verifier=_pin_verifier(item, where, pin_pepper),
            )
        )
    return PatronPage(upserts, deleted, cursor, more)


def _pin_verifier(item: dict, where: str, pepper: bytes | None) -> str | None:
    value = item.get("pin_verifier")
    if value is None or pepper is None:
        return None
    try:
        return pepper_verifier(value, pepper)
    except VerifierError as exc:
        # The value is not shown: it is derived from a PIN.
        raise MalformedAnswer(f"{where}.pin_verifier: {exc}") from None


def parse_reservation_page(body: bytes) -> ReservationPage:
    """One page of ``GET …/reservations``."""
    items, cursor, more = _page(decode(body))
    reservations: list[Reservation] = []
    for index, item in enumerate(items):
        where = f"items[{index}]"
        if not isinstance(item, dict):
            raise MalformedAnswer(f"{where}: expected an object, got {_show(item)}")
        begin = _instant(item, "begin", where)
        end = _instant(item, "end", where)
        if end <= begin:
            raise MalformedAnswer(f"{where}.end: {_show(item['end'])} is not after begin {_show(item['begin'])}")
        state = _required(item, "state", where)
        if state not in RESERVATION_STATES:
            raise MalformedAnswer(f"{where}.state: {_show(state)} is not one of {', '.join(RESERVATION_STATES)}")
        reservations.append(
            Reservation(
                id=_text(item, "id", where),
                resource=_text(item, "resource", where),
                card_key=_card_key(item, where),
                begin=begin,
                end=end,
                state=state,
            )
        )
    return ReservationPage(reservations, cursor, more)


def parse_hours_page(body: bytes) -> tuple[list, str | None, bool]:
    """One page of ``GET …/hours``: its raw items (checked by the Kirkanta parser), cursor and more.

    The hours answer has no cursor when it fits in one page; ``more`` defaults to false.
    """
    document = decode(body)
    if not isinstance(document, dict):
        raise MalformedAnswer(f"expected a JSON object with \"items\", got {_show(document)}")
    items = _required(document, "items", "")
    if not isinstance(items, list):
        raise MalformedAnswer(f"items: expected a list, got {_show(items)}")
    more = document.get("more", False)
    if not isinstance(more, bool):
        raise MalformedAnswer(f"more: expected true or false, got {_show(more)}")
    cursor = document.get("cursor")
    if more:
        cursor = _cursor(document)
    return items, cursor, more


def parse_event_ack(body: bytes) -> EventAck:
    """The answer to ``POST …/events``."""
    document = decode(body)
    if not isinstance(document, dict):
        raise MalformedAnswer(f"expected a JSON object with \"accepted\" and \"duplicates\", got {_show(document)}")
    counts = []
    for key in ("accepted", "duplicates"):
        value = _required(document, key, "")
        if type(value) is not int or value < 0:
            raise MalformedAnswer(f"{key}: expected a whole number of 0 or more, got {_show(value)}")
        counts.append(value)
    return EventAck(*counts)


def _page(document: Any) -> tuple[list, str, bool]:
    if not isinstance(document, dict):
        raise MalformedAnswer(f"expected a JSON object with \"items\", \"cursor\" and \"more\", got {_show(document)}")
    items = _required(document, "items", "")
    if not isinstance(items, list):
        raise MalformedAnswer(f"items: expected a list, got {_show(items)}")
    more = _required(document, "more", "")
    if not isinstance(more, bool):
        raise MalformedAnswer(f"more: expected true or false, got {_show(more)}")
    return items, _cursor(document), more


def _cursor(document: dict) -> str:
    cursor = _required(document, "cursor", "")
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise MalformedAnswer(f"cursor: expected a non-empty string of at most {MAX_CURSOR_LENGTH} characters, got {_show(cursor)}")
    return cursor


def _required(item: dict, key: str, where: str) -> Any:
    if key not in item:
        raise MalformedAnswer(f"{where + '.' if where else ''}{key}: missing")
    return item[key]


def _card_key(item: dict, where: str) -> str:
    value = _required(item, "card_key", where)
    if not isinstance(value, str) or not _CARD_KEY.fullmatch(value):
        raise MalformedAnswer(f"{where}.card_key: {_show(value)} is not 64 lowercase hex digits")
    return value


def _bool(item: dict, key: str, where: str) -> bool:
    value = _required(item, key, where)
    if not isinstance(value, bool):
        raise MalformedAnswer(f"{where}.{key}: expected true or false, got {_show(value)}")
    return value


def _optional_bool(item: dict, key: str, where: str) -> bool:
    value = item.get(key, False)
    if not isinstance(value, bool):
        raise MalformedAnswer(f"{where}.{key}: expected true or false, got {_show(value)}")
    return value


def _text(item: dict, key: str, where: str) -> str:
    value = _required(item, key, where)
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT_LENGTH:
        raise MalformedAnswer(f"{where}.{key}: expected a non-empty string of at most {MAX_TEXT_LENGTH} characters, got {_show(value)}")
    return value


def _optional_text(item: dict, key: str, where: str) -> str | None:
    if _required(item, key, where) is None:
        return None
    return _text(item, key, where)


def _optional_date(item: dict, key: str, where: str) -> date | None:
    value = _required(item, key, where)
    if value is None:
        return None
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise MalformedAnswer(f"{where}.{key}: {_show(value)} is not a date (expected YYYY-MM-DD or null)")


def _instant(item: dict, key: str, where: str) -> datetime:
    value = _required(item, key, where)
    moment = None
    if isinstance(value, str) and "T" in value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
    if moment is None or moment.tzinfo is None:
        raise MalformedAnswer(f"{where}.{key}: {_show(value)} is not an ISO 8601 time with an offset, such as 2026-11-23T14:00:00+02:00")
    return moment


def _show(value: Any) -> str:
    """A value as it looked in the JSON, cut short so one huge field cannot flood the log."""
    shown = json.dumps(value, ensure_ascii=False, default=repr)
    return shown if len(shown) <= 60 else shown[:57] + "..."
