"""Checking the central service's answers before any of them is used.

A patron page decides who gets in at night, so an answer is taken whole or not at
all: one bad item rejects the page, with a message naming the item, the field and
what was there, and the cache stays as it was. Keys this module does not know are
ignored, so the central service can add fields without breaking older devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from device.pins import VerifierError, pepper_verifier
from device.policy import Patron, Reservation
from sync import json_fields as field
from sync.json_input import decode_json

RESERVATION_STATES = ("confirmed", "cancelled")
#: A cursor is opaque, but it is stored and sent back in a URL; this bounds it.
MAX_CURSOR_LENGTH = 2000


#: An answer that does not follow the protocol; nothing in it has been applied.
MalformedAnswer = field.FieldError


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
            raise MalformedAnswer(f"{where}: expected an object, got {field.show(item)}")
        card_key = field.card_key(item, where)
        if field.optional_boolean(item, "deleted", where):
            deleted.append(card_key)
            continue
        upserts.append(
            Patron(
                card_key=card_key,
                self_service=field.boolean(item, "self_service", where),
                blocked_reason=field.optional_text(item, "blocked_reason", where),
                valid_until=field.optional_date(item, "valid_until", where),
                age_ok_from=field.optional_date(item, "age_ok_from", where),
                staff=field.boolean(item, "staff", where),
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
            raise MalformedAnswer(f"{where}: expected an object, got {field.show(item)}")
        begin = field.instant(item, "begin", where)
        end = field.instant(item, "end", where)
        if end <= begin:
            raise MalformedAnswer(f"{where}.end: {field.show(item['end'])} is not after begin {field.show(item['begin'])}")
        state = field.required(item, "state", where)
        if state not in RESERVATION_STATES:
            raise MalformedAnswer(f"{where}.state: {field.show(state)} is not one of {', '.join(RESERVATION_STATES)}")
        reservations.append(
            Reservation(
                id=field.text(item, "id", where),
                resource=field.text(item, "resource", where),
                card_key=field.card_key(item, where),
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
        raise MalformedAnswer(f"expected a JSON object with \"items\", got {field.show(document)}")
    items = field.required(document, "items", "")
    if not isinstance(items, list):
        raise MalformedAnswer(f"items: expected a list, got {field.show(items)}")
    more = document.get("more", False)
    if not isinstance(more, bool):
        raise MalformedAnswer(f"more: expected true or false, got {field.show(more)}")
    cursor = document.get("cursor")
    if more:
        cursor = _cursor(document)
    return items, cursor, more


def parse_event_ack(body: bytes) -> EventAck:
    """The answer to ``POST …/events``."""
    document = decode(body)
    if not isinstance(document, dict):
        raise MalformedAnswer(f"expected a JSON object with \"accepted\" and \"duplicates\", got {field.show(document)}")
    counts = []
    for key in ("accepted", "duplicates"):
        value = field.required(document, key, "")
        if type(value) is not int or value < 0:
            raise MalformedAnswer(f"{key}: expected a whole number of 0 or more, got {field.show(value)}")
        counts.append(value)
    return EventAck(*counts)


def _page(document: Any) -> tuple[list, str, bool]:
    if not isinstance(document, dict):
        raise MalformedAnswer(f"expected a JSON object with \"items\", \"cursor\" and \"more\", got {field.show(document)}")
    items = field.required(document, "items", "")
    if not isinstance(items, list):
        raise MalformedAnswer(f"items: expected a list, got {field.show(items)}")
    more = field.required(document, "more", "")
    if not isinstance(more, bool):
        raise MalformedAnswer(f"more: expected true or false, got {field.show(more)}")
    return items, _cursor(document), more


def _cursor(document: dict) -> str:
    cursor = field.required(document, "cursor", "")
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise MalformedAnswer(f"cursor: expected a non-empty string of at most {MAX_CURSOR_LENGTH} characters, got {field.show(cursor)}")
    return cursor
