"""The Today page: what staff glance at first — hours now, doors, booth, visits, latest events, warnings.

The page polls its live part every few seconds (``today.live``), so a door that
opens or a sync that fails shows up without anyone reloading.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, time

from flask import Blueprint, abort, flash, redirect, render_template, url_for

from admin_web import branch, branch_now, store
from admin_web.auth import actor, log_action
from admin_web.doors import ACTION_LABELS
from admin_web.i18n import door_labels, gettext as _, lazy_gettext as _l, local_datetime, local_time
from device import events as event_types, stats
from device.config import BUILDING
from device.events import parse_utc
from device.heartbeat import KEY as HEARTBEAT_KEY, liveness
from device.store import day_bounds

bp = Blueprint("today", __name__)

#: A card key is shown only this far, enough to tell two taps apart, never to look a card up.
CARD_KEY_PREFIX = 6
_SHOWN_KEY = re.compile(f"[0-9a-f]{{{CARD_KEY_PREFIX}}}")

SYNC_STREAM_LABELS = {
    "patrons": _l("Patron permissions"),
    "reservations": _l("Booth reservations"),
    "hours": _l("Opening hours"),
    "events": _l("Sending events"),
}


@bp.route("/")
def index():
    return render_template("today/index.html", **_snapshot())


@bp.route("/today/live")
def live():
    return render_template("today/_live.html", **_snapshot())


@bp.route("/today/pin-lockouts/<card>/clear", methods=["POST"])
def clear_lockout(card: str):
    """Let a locked-out card type its PIN again, for a patron who has shown staff who they are.

    The page names the card only by the start of its key, so the card is found
    again in the device's list of lockouts. The device does the clearing when it
    picks up the command, and logs who asked for it in the event log.
    """
    if not _SHOWN_KEY.fullmatch(card):
        abort(404)
    keys = [key for key, _until in branch_now.pin_lockouts(store().status(), branch_now.utc_now()) if key.startswith(card)]
    if not keys:
        flash(_("The card %(card)s… is no longer locked out.", card=card), "warn")
    elif len(keys) > 1:
        flash(_("Two locked-out cards begin with %(card)s…, so the lockout was not cleared. Each lockout ends at the time shown.",
                card=card), "warn")
    else:
        with store().conn:
            command = store().add_command(BUILDING, "clear_pin_lockout", requested_by=actor(), card_key=keys[0])
            log_action("pin_lockout.clear", card, command=command)
        flash(_("The PIN lockout of card %(card)s… is being cleared. The patron can type the PIN again as soon as "
                "the card leaves the list.", card=card), "ok")
    return redirect(url_for("today.index"))


def _snapshot() -> dict:
    config, db = branch().config, store()
    now = branch_now.utc_now()
    today = now.astimezone(config.tz).date()
    schedule = db.schedule(config.tz)
    status = db.status()
    building = branch_now.building_now(config, status, now, CARD_KEY_PREFIX)
    return {
        "now": now,
        "today": today,
        "mode": branch_now.mode_now(schedule, now),
        "segments": branch_now.day_segments(schedule, today),
        "now_x": branch_now.day_fraction(config.tz, today, now),
        "ticks": [(str(hour), branch_now.day_fraction(config.tz, today, _at(today, hour, config.tz))) for hour in (6, 12, 18)],
        "doors": branch_now.doors_now(config, status),
        "booths": branch_now.booths_now(config, db, schedule, now),
        "visits": stats.summarize(db, config.tz, today, today)[0],
        "events": _latest_events(),
        "warnings": _warnings(status, now) + (_building_warnings(today) if building.counts_people else []),
        "building": building,
        "clearing": _lockouts_being_cleared() if building.pin_lockouts else set(),
        "local_day": lambda moment: moment.astimezone(config.tz).date(),
    }


def _lockouts_being_cleared() -> set[str]:
    """The shown card keys whose clearing the device has not carried out yet."""
    return {command.card_key[:CARD_KEY_PREFIX] for command in store().pending_commands() if command.action == "clear_pin_lockout"}


def _at(day, hour: int, tz) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=tz)


def _latest_events(limit: int = 10) -> list[dict]:
    doors = door_labels(branch().config)
    shown = []
    for event in store().events(limit=limit):
        detail = json.loads(event["detail"]) if event["detail"] else {}
        shown.append({
            "ts": parse_utc(event["ts"]),
            "door": doors.get(event["door"], event["door"]),
            "type": event["type"],
            "reason": event["reason"],
            "card": event["card_key"][:CARD_KEY_PREFIX] if event["card_key"] else None,
            "action": ACTION_LABELS.get(detail.get("action")),
            "by": detail.get("by"),
            "change": detail.get("change"),
        })
    return shown


def _warnings(status: dict[str, dict], now: datetime) -> list[str]:
    """What staff should act on, in plain words: the device, the readers, the central service."""
    config = branch().config
    warnings = []
    device = liveness(status.get(HEARTBEAT_KEY), now)
    if not device.running:
        warnings.append(_device_stopped(device.not_running_since, now))
    for door in config.doors:
        reader = status.get(f"reader:{door.id}")
        if reader is not None and reader["value"].get("online") is False:
            warnings.append(_(
                "The card reader of %(door)s is offline since %(time)s. Check its cable.",
                door=door.label, time=local_datetime(reader["updated_at"]),
            ))
    for door in branch_now.doors_now(config, status):
        if door.card_only_since is not None:
            warnings.append(_(
                "The PIN keypad of %(door)s has not worked since %(time)s: the door opens by card alone, without a PIN. "
                "Check the keypad's cable; the door asks for PINs again as soon as the keypad works.",
                door=door.label, time=local_datetime(door.card_only_since),
            ))
    sip2 = status.get("sip2")
    if sip2 is not None:
        state = sip2["value"]
        if state.get("last_error_at") and (not state.get("last_success") or state["last_error_at"] > state["last_success"]):
            warnings.append(_(
                "The library system did not answer the door's card check at %(time)s (%(error)s): cards are "
                "checked against the cached data, and cards the cache does not know cannot be checked.",
                time=local_datetime(state["last_error_at"]), error=state.get("last_error"),
            ))
    stale_after = config.policy.max_offline_age / 2
    for stream, state in store().sync_states().items():
        what = SYNC_STREAM_LABELS.get(stream, stream)
        if state["last_error"]:
            warnings.append(_(
                "%(what)s: the last sync with the central service failed at %(time)s (%(error)s).",
                what=what, time=local_datetime(state["last_error_at"]), error=state["last_error"],
            ))
        elif state["last_success"] is None:
            warnings.append(_("%(what)s: the sync with the central service has not succeeded yet.", what=what))
        elif now - parse_utc(state["last_success"]) > stale_after:
            warnings.append(_(
                "%(what)s: last synced with the central service at %(time)s. Check the network connection.",
                what=what, time=local_datetime(state["last_success"]),
            ))
    return warnings


def _device_stopped(since: datetime | None, now: datetime) -> str:
    """Since when, if the device ever ran: the time alone today, with the date on an older stop."""
    if since is None:
        return _("The door controller is not running: cards do not open the doors. Start the omaovi-device service or restart the device.")
    tz = branch().config.tz
    same_day = since.astimezone(tz).date() == now.astimezone(tz).date()
    return _(
        "The door controller has not been running since %(time)s: cards do not open the doors. Start the "
        "omaovi-device service or restart the device.",
        time=local_time(since) if same_day else local_datetime(since),
    )


def _building_warnings(today) -> list[str]:
    """Today's last "people left inside" and tailgating: each stays up for the rest of
    the day, since staff may glance at the page hours later, and is gone tomorrow.

    Only where the count is worth showing at all (see ``building_now``): every
    device logs people left inside, but from the exit button alone it is a guess.
    """
    config = branch().config
    start = day_bounds(today, config.tz)[0]
    warnings = []
    for event in store().find_events(type=event_types.PEOPLE_INSIDE_AFTER_CLOSE, start=start, limit=1):
        detail = json.loads(event["detail"] or "{}")
        warnings.append(_(
            "At closing (%(time)s) people were still counted inside: %(count)s. Check that nobody is left in the library.",
            time=local_time(event["ts"]), count=detail.get("count", "?"),
        ))
    doors = door_labels(config)
    for event in store().find_events(type=event_types.TAILGATING, start=start, limit=1):
        detail = json.loads(event["detail"] or "{}")
        warnings.append(_(
            "%(door)s at %(time)s: %(people)s people went in on %(grants)s card taps. Someone may have followed "
            "another person in.",
            door=doors.get(event["door"], event["door"]), time=local_time(event["ts"]),
            people=detail.get("people_in", "?"), grants=detail.get("grants", "?"),
        ))
    return warnings
