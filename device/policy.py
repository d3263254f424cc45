"""Who may open which door, and why not: one pure function.

Everything ``decide`` needs is passed in, so it can be tested as a table and the
same answer comes out whether the patron record came from the central service, a
CSV import or a SIP2 check a moment ago. The reasons are a closed set: the staff
page translates them, the patron display shows them and the statistics count them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Iterable

from device.config import DoorConfig, PolicyConfig
from device.schedule import Schedule


class Reason(str, enum.Enum):
    GRANTED = "granted"
    STAFF = "staff"
    UNKNOWN_CARD = "unknown_card"
    BLOCKED = "blocked"
    UNDERAGE = "underage"
    TERMS_NOT_ACCEPTED = "terms_not_accepted"
    #: The library system's patron class (SIP2 ``PC``) is not one the branch lets in on its own.
    CLASS_NOT_ALLOWED = "class_not_allowed"
    CARD_EXPIRED = "card_expired"
    CLOSED = "closed"
    NO_RESERVATION = "no_reservation"
    WRONG_PIN = "wrong_pin"
    PIN_TIMEOUT = "pin_timeout"
    #: No fresh answer about this card and no cache entry young enough to trust.
    UNAVAILABLE = "unavailable"


class PinResult(str, enum.Enum):
    """How the PIN step went, for doors and modes that ask for card + PIN."""

    OK = "ok"
    WRONG = "wrong"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Patron:
    """What the branch may know about a card: permissions, never identity."""

    card_key: str
    self_service: bool = False
    blocked_reason: str | None = None
    valid_until: date | None = None
    #: The day the patron reaches the branch's minimum age; no birth date is kept.
    age_ok_from: date | None = None
    staff: bool = False
    fetched_at: datetime | None = None
    #: Staff cards and blocks entered on this branch's own staff page. They are the
    #: branch's own truth, so they never go stale the way a cached answer does.
    local_staff: bool = False
    local_block: str | None = None
    #: The peppered PIN verifier (``device.pins``) for checking a PIN offline; never the PIN.
    pin_verifier: str | None = field(default=None, repr=False)
    #: Not self-service because of the patron's class in the library system (not the terms).
    class_refused: bool = False


@dataclass(frozen=True)
class Reservation:
    id: str
    resource: str
    card_key: str
    begin: datetime
    end: datetime
    state: str = "confirmed"


@dataclass(frozen=True)
class DoorState:
    """What the door itself adds to a decision: a staff lockdown overrides the schedule."""

    lockdown: bool = False


@dataclass(frozen=True)
class Decision:
    granted: bool
    reason: Reason
    mode: str
    #: For a booth card that is early or late: the reservation it holds, so the
    #: patron can be told when it starts ("Varaus alkaa klo 14.00").
    reservation: Reservation | None = None


def decide(
    card_key: str,
    door: DoorConfig,
    now: datetime,
    schedule: Schedule,
    patron: Patron | None,
    reservations: Iterable[Reservation],
    settings: PolicyConfig,
    state: DoorState = DoorState(),
    pin: PinResult | None = None,
    unknown: Reason = Reason.UNKNOWN_CARD,
) -> Decision:
    """Decide one tap. ``now`` is an aware datetime; ``reservations`` may hold any rows.

    ``pin`` is None where no PIN is asked; a PIN is checked only after the card
    itself would be let in, so a wrong PIN never hides a more useful reason.
    ``unknown`` is the answer for a card with no entry: ``UNAVAILABLE`` when the
    caller cannot tell an unknown card from one it could not check.
    """
    mode = schedule.mode_at(now)
    today = now.astimezone(schedule.tz).date()

    def deny(reason: Reason, reservation: Reservation | None = None) -> Decision:
        return Decision(False, reason, mode, reservation)

    if patron is not None and patron.local_staff:
        return Decision(True, Reason.STAFF, mode)
    # This branch's own block stops a card at once (a lost staff card, say), also
    # while the central service still says staff.
    if patron is not None and patron.local_block:
        return deny(Reason.BLOCKED)
    if patron is not None and patron.staff and fresh(patron, now, settings):
        return Decision(True, Reason.STAFF, mode)
    if state.lockdown:
        return deny(Reason.CLOSED)

    if door.kind == "booth":
        decision = _booth(card_key, door, now, reservations, settings, mode, deny)
        return _with_pin(decision, pin)

    if mode == "closed":
        return deny(Reason.CLOSED)
    if open_to_all(door, mode, settings):
        # The door stands open for everyone; the tap only counts the visit.
        return Decision(True, Reason.GRANTED, mode)
    problem = _patron_problem(patron, now, today, settings, self_service=(mode == "self_service"), unknown=unknown)
    if problem is not None:
        return deny(problem)
    return _with_pin(Decision(True, Reason.GRANTED, mode), pin)


def _with_pin(decision: Decision, pin: PinResult | None) -> Decision:
    if not decision.granted or pin is None or pin is PinResult.OK:
        return decision
    reason = Reason.WRONG_PIN if pin is PinResult.WRONG else Reason.PIN_TIMEOUT
    return Decision(False, reason, decision.mode, decision.reservation)


def open_to_all(door: DoorConfig, mode: str, settings: PolicyConfig) -> bool:
    """Whether the schedule holds this door unlocked: an entrance in staffed hours
    with ``staffed_entrance = "unlocked"``."""
    return door.kind == "entrance" and mode == "staffed" and settings.staffed_entrance == "unlocked"


#: How far ahead of the device's clock a cache entry's fetch time may be and still
#: count: clock skew between the device and whoever stamped the entry. Further
#: ahead means the device's clock went back (a Pi without a real-time clock starts
#: from its last saved time), and then the entry's real age cannot be known.
MAX_FUTURE_FETCH = timedelta(minutes=5)


def fresh(patron: Patron, now: datetime, settings: PolicyConfig) -> bool:
    """Whether the entry is young enough to decide on (``max_offline_age``)."""
    if patron.fetched_at is None:
        return False
    return -MAX_FUTURE_FETCH <= now - patron.fetched_at <= settings.max_offline_age


def _patron_problem(
    patron: Patron | None, now: datetime, today: date, settings: PolicyConfig, *, self_service: bool, unknown: Reason
) -> Reason | None:
    """Why this patron may not enter now, or None.

    In staffed hours with ``staffed_entrance = "card"`` a valid library card is
    enough: staff are present, so age and the self-service terms do not apply.
    """
    if patron is None:
        return unknown
    if not fresh(patron, now, settings):
        return Reason.UNAVAILABLE
    if patron.blocked_reason:
        return Reason.BLOCKED
    if patron.valid_until is not None and patron.valid_until < today:
        return Reason.CARD_EXPIRED
    if self_service:
        if patron.age_ok_from is None or patron.age_ok_from > today:
            return Reason.UNDERAGE
        if not patron.self_service:
            return Reason.CLASS_NOT_ALLOWED if patron.class_refused else Reason.TERMS_NOT_ACCEPTED
    return None


def _booth(card_key, door, now, reservations, settings, mode, deny) -> Decision:
    """A booth opens for the card holding a live reservation of that booth, and nobody else."""
    early = timedelta(minutes=settings.booth_early_minutes)
    mine = sorted(
        # Only a confirmed reservation opens: booking systems also keep requested,
        # denied and unpaid ones, and none of those is the booth's permission.
        (r for r in reservations if r.resource == door.resource and r.card_key == card_key and r.state == "confirmed" and r.end > now),
        key=lambda r: r.begin,
    )
    for reservation in mine:
        if reservation.begin - early <= now:
            return Decision(True, Reason.GRANTED, mode, reservation)
    return deny(Reason.NO_RESERVATION, mine[0] if mine else None)
