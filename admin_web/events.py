"""The event log page: every tap and door happening, filtered and paged, newest first.

No raw card number is ever shown, stored or put in a URL here. An admin who needs
one card's events types its number into a POST form; the number is hashed to the
card key at once and only the key travels on, in the query string of the page
that lists the events. The lookup is audited without the number.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import date

from flask import Blueprint, abort, g, redirect, render_template, request, url_for

from admin_web import branch, store
from admin_web.auth import log_action
from admin_web.hours_input import InputError, parse_day
from admin_web.i18n import EVENT_TYPE_LABELS, REASON_LABELS, door_labels, gettext as _
from admin_web.security import ADMIN, access
from device.cards import CardNumberError, card_key, load_consortium_key
from device.store import day_bounds

bp = Blueprint("events", __name__)

PAGE_SIZE = 50
#: Characters of the card key shown in the log: enough to tell cards apart on one page.
KEY_PREFIX = 8
_CARD_KEY = re.compile(r"[0-9a-f]{64}")
#: The ``before`` of a page link: an event's sequence number.
_PAGE_LINK = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class Filters:
    door: str | None = None
    type: str | None = None
    reason: str | None = None
    start: date | None = None
    end: date | None = None
    card: str | None = None

    def query(self) -> dict:
        """The filters as query-string parameters, dates as ISO dates; for links and redirects."""
        values = {"door": self.door, "type": self.type, "reason": self.reason, "from": self.start, "to": self.end, "card": self.card}
        return {name: str(value) for name, value in values.items() if value}


def parse_filters(args) -> tuple[Filters, list[str]]:
    """The filters from a query string or form, and a message for each value that is not allowed."""
    errors: list[str] = []

    def choice(name: str, allowed, message: str) -> str | None:
        value = (args.get(name) or "").strip()
        if value and value not in allowed:
            errors.append(message)
            return None
        return value or None

    filters = Filters(
        door=choice("door", door_labels(branch().config), _("Door: choose one of the doors in the list.")),
        type=choice("type", EVENT_TYPE_LABELS, _("Event: choose one of the events in the list.")),
        reason=choice("reason", REASON_LABELS, _("Result: choose one of the results in the list.")),
        start=optional_day(args.get("from"), _("From"), errors),
        end=optional_day(args.get("to"), _("To"), errors),
        card=choice("card", _CardKeys(), _("Card: the card filter is broken; look the card up again.")),
    )
    if filters.start and filters.end and filters.end < filters.start:
        errors.append(_("To: the last day must not be before the first day."))
    return filters, errors


def optional_day(text: str | None, field: str, errors: list[str]) -> date | None:
    """A date field that may be left empty; a wrong one adds its message to ``errors``."""
    if not (text or "").strip():
        return None
    try:
        return parse_day(text, field)
    except InputError as exc:
        errors.append(str(exc))
        return None


class _CardKeys:
    """What the card filter allows: a whole card key, never anything that could be a card number."""

    def __contains__(self, value: str) -> bool:
        return bool(_CARD_KEY.fullmatch(value))


@bp.route("/events")
def index():
    filters, errors = parse_filters(request.args)
    if filters.card and not g.user.is_admin:
        abort(403)
    before = request.args.get("before", "")
    # ASCII digits only, and few enough for SQLite: "²".isdigit() is true, and 10**30 overflows.
    if before and not _PAGE_LINK.fullmatch(before):
        errors.append(_("The page link is broken; start again from the newest events."))
    if errors:
        return _page(filters, errors=errors), 400
    return _page(filters, before=int(before) if before else None)


@bp.route("/events/card", methods=["POST"])
@access(ADMIN)
def card_lookup():
    """Hash the typed number and show that card's events; the number goes no further than this call."""
    filters, errors = parse_filters(request.form)
    number = request.form.get("card_number", "")
    try:
        key = card_key(load_consortium_key(branch().config.consortium_key_file), number)
    except CardNumberError:
        errors.append(_("Card number: type the number printed on the card, digits and letters only."))
    if errors:
        return _page(filters, errors=errors), 400
    log_action("events.card_lookup", key[:KEY_PREFIX])
    return redirect(url_for("events.index", **replace(filters, card=key).query()))


def _page(filters: Filters, *, before: int | None = None, errors: list[str] | None = None) -> str:
    rows: list[dict] = []
    more = False
    if not errors:
        tz = branch().config.tz
        rows = store().find_events(
            door=filters.door, type=filters.type, reason=filters.reason, card_key=filters.card,
            start=day_bounds(filters.start, tz)[0] if filters.start else None,
            end=day_bounds(filters.end, tz)[1] if filters.end else None,
            before_seq=before, limit=PAGE_SIZE + 1,
        )
        more = len(rows) > PAGE_SIZE
        # Who asked, for the events that staff caused (door commands, a cleared PIN lockout).
        rows = [row | {"by": json.loads(row["detail"] or "{}").get("by")} for row in rows[:PAGE_SIZE]]
    doors = door_labels(branch().config)
    return render_template(
        "events/index.html", rows=rows, more=more, before=before, filters=filters, errors=errors or [],
        other_filters=replace(filters, card=None).query(), doors=doors, key_prefix=KEY_PREFIX,
        type_options=EVENT_TYPE_LABELS.items(), reason_options=REASON_LABELS.items(),
    )
