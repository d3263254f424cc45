"""Event rows: every tap decision and every door happening, and what each one counts.

The counts are kept per UTC hour and updated in the same transaction as the event
itself, so statistics never disagree with the log, and raw events can be deleted
after the retention period without changing a single figure.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

#: Event types. A ``tap`` carries a reason; the others are door happenings.
TAP = "tap"
EXIT = "exit"
DOOR_OPENED = "door_opened"
DOOR_CLOSED = "door_closed"
HELD_OPEN = "door_held_open"
FORCED_OPEN = "door_forced_open"
COMMAND = "command"
RESERVATION_NO_SHOW = "reservation_no_show"
READER_OFFLINE = "reader_offline"
READER_ONLINE = "reader_online"
KEYPAD_OFFLINE = "keypad_offline"
KEYPAD_ONLINE = "keypad_online"
PIN_LOCKOUT = "pin_lockout"
#: Staff cleared a card's PIN lockout: its earlier wrong PINs no longer count.
PIN_LOCKOUT_CLEARED = "pin_lockout_cleared"
TAILGATING = "tailgating"
PEOPLE_INSIDE_AFTER_CLOSE = "people_inside_after_close"
ANNOUNCEMENT = "announcement"
BUILDING_OUTPUT = "building_output"
#: Door happenings that the statistics count, one per event.
COUNTED = (EXIT, HELD_OPEN, FORCED_OPEN, PIN_LOCKOUT, TAILGATING, PEOPLE_INSIDE_AFTER_CLOSE)
#: The database could not be written; logged with the time it began once it can be.
STORAGE_FAILED = "storage_failed"
#: Writing works again; the detail says how many events waited in memory and how many were lost.
STORAGE_RECOVERED = "storage_recovered"
#: The ``door`` of an event about the whole device rather than one door.
DEVICE = "device"

#: The counter of booth reservation minutes, and the detail key of a first use that adds to it.
BOOTH_MINUTES = "booth_minutes"
#: The counter of granted entrance taps that are not a new physical visit: a repeat of
#: one card within ``[policy] repeat_tap_minutes``, or a tap at a door whose people
#: counter counts the people instead. Physical visits are the taps less these.
NOT_A_VISIT = "tap_not_a_visit"
#: The counter of a people counter's "in" pulses: physical visits at its door.
PEOPLE_IN = "people_in"

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
HOUR_FORMAT = "%Y-%m-%dT%H:00Z"
_UTC_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def utc_text(moment: datetime) -> str:
    """Fixed-width UTC text, so that string order is time order in SQL."""
    return moment.astimezone(timezone.utc).strftime(TIME_FORMAT)


def parse_utc(text: str) -> datetime:
    """The instant ``utc_text`` wrote; anything else is a ValueError.

    ``fromisoformat`` after a check of the shape, because ``strptime`` takes 40
    times as long and the staff page parses every event it shows (benchmark P6).
    """
    if not _UTC_TEXT.fullmatch(text):
        raise ValueError(f"{text!r} is not a UTC time written as {TIME_FORMAT}")
    return datetime.fromisoformat(text)


def hour_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(HOUR_FORMAT)


@dataclass(frozen=True)
class Event:
    ts: datetime
    door: str
    type: str
    reason: str | None = None
    mode: str | None = None
    card_key: str | None = None
    door_kind: str = "entrance"
    detail: dict = field(default_factory=dict)
    #: A granted entrance tap that is not a new physical visit (see NOT_A_VISIT); counted, never stored.
    not_a_visit: bool = False
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    def row(self) -> dict:
        return {
            "uuid": self.uuid,
            "ts": utc_text(self.ts),
            "door": self.door,
            "type": self.type,
            "reason": self.reason,
            "mode": self.mode,
            "card_key": self.card_key,
            "detail": json.dumps(self.detail, sort_keys=True) if self.detail else None,
        }

    def metrics(self) -> dict[str, int]:
        """The hourly counters this event adds to, with how much it adds to each.

        Most add one. The first granted tap of a booth reservation also adds the
        reservation's length in minutes to ``booth_minutes`` (the controller marks
        it in the detail): booth hours must outlive the raw events like every
        other figure, and a holder who taps in and out again is counted once.
        A granted entrance tap marked ``not_a_visit`` also adds to NOT_A_VISIT.
        """
        if self.type == TAP:
            if self.reason == "granted":
                if self.door_kind != "booth":
                    return {f"visit_{self.mode}": 1} | ({NOT_A_VISIT: 1} if self.not_a_visit else {})
                metrics = {"booth_use": 1}
                if self.detail.get(BOOTH_MINUTES):
                    metrics[BOOTH_MINUTES] = int(self.detail[BOOTH_MINUTES])
                return metrics
            if self.reason == "staff":
                return {"staff_entry": 1}
            return {f"denied_{self.reason}": 1}
        if self.type in COUNTED:
            return {self.type: 1}
        return {}
