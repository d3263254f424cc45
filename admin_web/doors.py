"""The Doors page: each door's state, and staff asking the device to unlock, hold, lock down or release.

The web never drives a relay. A confirmed action becomes a row in ``commands``,
which the device carries out within a fraction of a second and then publishes
the door's new state; the page shows that state live. Every action first gets a
confirmation page that says what will happen, as a plain GET page with a POST
form, so a stray tap on a tablet never opens a door and no JavaScript is needed.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from admin_web import branch, branch_now, store
from admin_web.auth import actor, log_action
from admin_web.i18n import gettext as _, lazy_gettext as _l, local_datetime
from device.events import utc_text

bp = Blueprint("doors", __name__, url_prefix="/doors")

ACTION_LABELS = {
    "pulse": _l("Pulse unlock"),
    "hold": _l("Hold unlocked"),
    "lockdown": _l("Lock down"),
    "release": _l("Release"),
}
#: The longest hold staff may ask for: a forgotten hold must not leave the door open for days.
MAX_HOLD = timedelta(hours=24)

_CLOCK = r"(?P<hour>[0-9]{1,2})[.:](?P<minute>[0-9]{2})"
_HOLD_UNTIL = re.compile(
    r"(?:(?:(?P<day>[0-9]{1,2})\.(?P<month>[0-9]{1,2})\.(?P<year>[0-9]{4})?|(?P<iso>[0-9]{4}-[0-9]{2}-[0-9]{2}))[ T]+)?"
    + _CLOCK
)


bp.context_processor(lambda: {"action_labels": ACTION_LABELS})


class HoldTimeError(ValueError):
    """A hold time staff cannot have meant; ``str()`` is the page's message."""


@bp.route("")
def index():
    return render_template("doors/index.html", doors=_doors(), pending=_pending())


@bp.route("/<door_id>/state")
def state(door_id: str):
    """The live part of one door's card, fetched by the page every few seconds."""
    door = _door_or_404(door_id)
    return render_template("doors/_state.html", door=door, pending=_pending())


@bp.route("/<door_id>/<any(pulse, hold, lockdown, release):action>", methods=["GET", "POST"])
def confirm(door_id: str, action: str):
    """GET says what the action will do and asks; POST (the Confirm button) does it."""
    door = _door_or_404(door_id)
    values = request.form if request.method == "POST" else request.args
    until_text = values.get("until", "").strip()
    until, error = None, None
    if action == "hold" and (request.method == "POST" or "until" in values):
        try:
            until = parse_hold_until(until_text, branch_now.utc_now(), branch().config.tz)
        except HoldTimeError as exc:
            error = str(exc)
    if error is None and request.method == "POST":
        with store().conn:
            command = store().add_command(door.id, action, requested_by=actor(), until=until)
            detail = {"command": command} | ({"until": utc_text(until)} if until else {})
            log_action(f"door.{action}", door.id, **detail)
        flash(_("%(door)s: “%(action)s” was sent to the door controller. The state below changes as soon as the door has acted.",
                door=door.label, action=ACTION_LABELS[action]), "ok")
        return redirect(url_for("doors.index"))
    page = render_template(
        "doors/confirm.html", door=door, action=action, until=until, until_text=until_text, error=error,
        today=branch_now.utc_now().astimezone(branch().config.tz).date(),
    )
    return page, 400 if error else 200


def parse_hold_until(text: str, now: datetime, tz) -> datetime:
    """The instant a hold should end, from "18.00" (today), "26.11.2026 8.00" or "2026-11-26 08:00", local time.

    Refused: anything else, a time already past, and more than MAX_HOLD ahead.
    """
    if not text:
        raise HoldTimeError(_("Until: give the time the door should lock again, for example 18.00."))
    match = _HOLD_UNTIL.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        day = _day(match, now.astimezone(tz).date())
        moment = datetime.combine(day, time(int(match["hour"]), int(match["minute"])), tzinfo=tz)
    except ValueError:
        raise HoldTimeError(_(
            "Until: “%(value)s” is not a time. Write a time today such as 18.00, or a date and time such as 26.11.2026 8.00.",
            value=text,
        )) from None
    if moment <= now:
        raise HoldTimeError(_("Until: %(time)s has already passed. Give a later time.", time=local_datetime(moment)))
    if moment - now > MAX_HOLD:
        raise HoldTimeError(_(
            "Until: a door can be held unlocked for at most 24 hours, that is until %(limit)s at the latest.",
            limit=local_datetime(now + MAX_HOLD),
        ))
    return moment


def _day(match: re.Match, today: date) -> date:
    if match["iso"]:
        return date.fromisoformat(match["iso"])
    if match["day"]:
        return date(int(match["year"] or today.year), int(match["month"]), int(match["day"]))
    return today


def _doors() -> list[branch_now.DoorNow]:
    return branch_now.doors_now(branch().config, store().status())


def _door_or_404(door_id: str) -> branch_now.DoorNow:
    for door in _doors():
        if door.id == door_id:
            return door
    abort(404)


def _pending() -> dict[str, list]:
    """Commands the device has not carried out yet, per door: "waiting for the door controller"."""
    waiting: dict[str, list] = {}
    for command in store().pending_commands():
        waiting.setdefault(command.door, []).append(command)
    return waiting
