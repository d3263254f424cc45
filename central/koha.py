"""A card's permissions from a Koha patron, and nothing else about the patron.

Koha's ``GET /api/v1/patrons`` answers with everything it knows about a person:
names, addresses, e-mails, phones, notes, the birth date. This module reads only the
fields a door decision needs, straight into a :class:`~device.policy.Patron`:

- ``cardnumber``, hashed to ``card_key`` at once (a patron without one is skipped);
- ``expiry_date`` as ``valid_until`` (Koha counts the expiry day itself as valid);
- ``restricted`` and ``patron_card_lost`` as a short, fixed ``blocked_reason``;
- ``category_id`` for the staff flag and the categories allowed self-service;
- the extended attribute that records the self-service terms;
- ``date_of_birth``, only to compute ``age_ok_from``; the date is not kept.

A page is taken whole or not at all: a field of the wrong type refuses the page, and
with it the whole sync, with a message naming the page, the patron's position and
``patron_id`` and the field, never its value (it may be a birth date or a card number).

Pure functions: the HTTP side is central/koha_client.py, the sync and its
database write central/koha_sync.py, the schedule central/serve.py.
"""

from __future__ import annotations

import calendar
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from device.cards import CardNumberError, card_key
from device.policy import Patron
from sync.json_input import decode_json

RESTRICTED = "restricted in Koha"
CARD_LOST = "card reported lost in Koha"
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class KohaError(Exception):
    """A sync that did not happen; the message says why, without any patron's data."""


class KohaPageError(KohaError):
    """An answer from Koha that does not match its own definitions; nothing in it was used."""


@dataclass(frozen=True)
class KohaRules:
    """How a consortium's Koha records the things a door needs (``[koha]`` in central.toml)."""

    #: The code of the patron attribute type that records the self-service terms.
    self_service_attribute: str
    #: Its values that mean "terms accepted"; compared without case and surrounding space.
    self_service_accepted: tuple[str, ...]
    #: Patron categories whose cards are staff cards.
    staff_categories: frozenset[str] = frozenset()
    #: Categories allowed self-service; empty allows every category.
    allowed_categories: frozenset[str] = frozenset()
    #: The age from which self-service is allowed.
    minimum_age: int = 15


WITHOUT_CARD = "without a card number"
UNUSABLE_CARD = "with an unusable card number"
#: Patrons whose card numbers are one card once normalised ("abc-1" and "ABC1"): none
#: of them gets in by that card, since which one holds it cannot be told.
SHARED_CARD = "sharing a card number with another patron"


@dataclass
class Harvest:
    """What the pages of one sync gave, so far."""

    patrons: dict[str, Patron] = field(default_factory=dict)
    patron_ids: set[int] = field(default_factory=set)
    #: Koha patrons read, with or without a card.
    read: int = 0
    #: Patrons that gave no card, by why.
    skipped: Counter[str] = field(default_factory=Counter)
    _shared: set[str] = field(default_factory=set)


def token(body: bytes) -> tuple[str, int]:
    """The access token and its lifetime in seconds from ``POST /api/v1/oauth/token``."""
    answer = decode_json(body, KohaPageError)
    if not isinstance(answer, dict):
        raise KohaPageError(f"the token answer is {_kind(answer)}, not an object")
    access, lifetime = answer.get("access_token"), answer.get("expires_in")
    if not isinstance(access, str) or not access:
        raise KohaPageError("the token answer has no access_token string")
    if not _is_int(lifetime) or lifetime <= 0:
        raise KohaPageError("the token answer's expires_in is not a positive whole number")
    return access, lifetime


def read_page(body: bytes, page: int, consortium_key: bytes, rules: KohaRules, harvest: Harvest) -> int:
    """Add one page of ``GET /api/v1/patrons`` to ``harvest``; returns the patrons on it.

    The page is checked whole before anything is added, so a refused page leaves
    ``harvest`` as it was."""
    items = decode_json(body, lambda message: KohaPageError(f"page {page}: {message}"))
    if not isinstance(items, list):
        raise KohaPageError(f"page {page}: expected a list of patrons, got {_kind(items)}")
    found = [_permissions(item, f"page {page}, patron {index + 1}", consortium_key, rules) for index, item in enumerate(items)]
    ids = [patron_id for patron_id, _ in found]
    repeated = set(ids) & harvest.patron_ids or {i for i, n in Counter(ids).items() if n > 1}
    if repeated:
        raise KohaPageError(f"page {page}: patron_id {min(repeated)} came twice; Koha's paging shifted under the sync")
    harvest.patron_ids.update(ids)
    harvest.read += len(items)
    for _, result in found:
        if isinstance(result, str):
            harvest.skipped[result] += 1
        elif result.card_key in harvest._shared:
            harvest.skipped[SHARED_CARD] += 1
        elif result.card_key in harvest.patrons:
            del harvest.patrons[result.card_key]
            harvest._shared.add(result.card_key)
            harvest.skipped[SHARED_CARD] += 2
        else:
            harvest.patrons[result.card_key] = result
    return len(items)


def _permissions(item: Any, where: str, consortium_key: bytes, rules: KohaRules) -> tuple[int, Patron | str]:
    """``(patron_id, Patron)``, or ``(patron_id, why it was skipped)``."""
    if not isinstance(item, dict):
        raise KohaPageError(f"{where}: expected an object, got {_kind(item)}")
    patron_id = item.get("patron_id")
    if not _is_int(patron_id):
        raise KohaPageError(f"{where}: patron_id is {_kind(patron_id)}, not a whole number")
    where = f"{where} (patron_id {patron_id})"
    number = _typed(item, "cardnumber", str, where, nullable=True)
    category = _typed(item, "category_id", str, where)
    valid_until = _date(item, "expiry_date", where)
    born = _date(item, "date_of_birth", where)
    restricted = _typed(item, "restricted", bool, where)
    lost = _typed(item, "patron_card_lost", bool, where, nullable=True)
    accepted = _terms_accepted(item, where, rules)
    if not (number or "").strip():
        return patron_id, WITHOUT_CARD
    try:
        key = card_key(consortium_key, number)
    except CardNumberError:
        return patron_id, UNUSABLE_CARD
    reasons = [text for text, applies in ((RESTRICTED, restricted), (CARD_LOST, lost)) if applies]
    return patron_id, Patron(
        card_key=key,
        self_service=accepted and (not rules.allowed_categories or category in rules.allowed_categories),
        blocked_reason="; ".join(reasons) or None,
        valid_until=valid_until,
        age_ok_from=age_ok_from(born, rules.minimum_age),
        staff=category in rules.staff_categories,
    )


def age_ok_from(born: date | None, years: int) -> date | None:
    """The day someone born on ``born`` turns ``years`` old; None when the birth date is unknown.

    Someone born on 29 February comes of age on 28 February in a common year: under
    the Finnish act on computing time limits (150/1930, 4 §) a period ending on a day
    the month lacks ends on the month's last day."""
    if born is None:
        return None
    year = born.year + years
    return born.replace(year=year, day=min(born.day, calendar.monthrange(year, born.month)[1]))


def _terms_accepted(item: dict, where: str, rules: KohaRules) -> bool:
    if "extended_attributes" not in item:
        # Without them every card would lose self-service at once: refuse instead.
        raise KohaPageError(f"{where}: no extended_attributes; this Koha did not honour x-koha-embed: extended_attributes")
    attributes = item["extended_attributes"]
    if not isinstance(attributes, list):
        raise KohaPageError(f"{where}: extended_attributes is {_kind(attributes)}, not a list")
    accepted = {value.strip().casefold() for value in rules.self_service_accepted}
    found = False
    for index, attribute in enumerate(attributes):
        at = f"{where}, extended_attributes[{index}]"
        if not isinstance(attribute, dict):
            raise KohaPageError(f"{at}: expected an object, got {_kind(attribute)}")
        code = _typed(attribute, "type", str, at)
        value = _typed(attribute, "value", str, at)
        found = found or (code == rules.self_service_attribute and value.strip().casefold() in accepted)
    return found


def _typed(item: dict, key: str, kind: type, where: str, *, nullable: bool = False) -> Any:
    if key not in item:
        raise KohaPageError(f"{where}: {key} is missing")
    value = item[key]
    if value is None and nullable:
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        expected = {str: "a string", bool: "true or false"}[kind] + (" or null" if nullable else "")
        raise KohaPageError(f"{where}: {key} is {_kind(value)}, expected {expected}")
    return value


def _date(item: dict, key: str, where: str) -> date | None:
    value = _typed(item, key, str, where, nullable=True)
    if value is None:
        return None
    try:
        if not _ISO_DATE.fullmatch(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise KohaPageError(f"{where}: {key} is not a date (YYYY-MM-DD)") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    """What a value is, never what it says: it may be somebody's personal data."""
    if value is None:
        return "null"
    return {bool: "true or false", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)
