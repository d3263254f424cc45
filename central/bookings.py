"""Booth bookings on the central side: made, cancelled, shortened; never two at once.

The database refuses an overlapping confirmed booking of the same booth (an
exclusion constraint on PostgreSQL, triggers on SQLite), so two people pressing
"book" at the same moment cannot both win, whatever the timing between processes.
Every change appends to the reservations log, so it reaches the branch next round.

``request`` and ``cancel_as_patron`` are how a patron or the desk asks: they check the
booth's rules (central/booking_rules.py) first. ``book`` and ``cancel`` store what
has been decided; the desk's ``cancel`` is not bound by the patrons' cancelling
deadline, and notes on the booking when it set that deadline aside.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from central import branches, changelog, hours, schema
from central.booking_rules import DESK_OVERRIDABLE, Reason, Refusal, check_booking, check_cancel
from device.policy import Reservation

#: Booking references are read aloud at the desk: no 0/O, 1/I/L, and no vowels that spell words.
REFERENCE_ALPHABET = "23456789BCDFGHJKMNPQRSTVWXZ"
REFERENCE_LENGTH = 6


class BookingError(ValueError):
    """A booking that cannot be made or changed; the message says why."""


class SlotTaken(BookingError):
    """Someone else holds (part of) that time: the database refused the overlap."""


class Refused(BookingError):
    """A booking or cancellation the booth's rules do not allow; ``refusal`` says which rule, for the page to explain."""

    def __init__(self, refusal: Refusal, tz: ZoneInfo):
        self.refusal = refusal
        message = _EXPLAINED[refusal.reason]
        if refusal.alternative:
            begin, end = (moment.astimezone(tz) for moment in refusal.alternative)
            message += f"; the nearest that can be booked is {begin:%Y-%m-%d %H:%M}–{end:%H:%M}"
        super().__init__(message)


_EXPLAINED = {
    Reason.IN_THE_PAST: "that time has already begun",
    Reason.OFF_GRID: "a booking starts and lasts in whole slots of this booth",
    Reason.TOO_SHORT: "that is shorter than this booth's shortest booking",
    Reason.TOO_LONG: "that is longer than this booth's longest booking",
    Reason.TOO_FAR_AHEAD: "that day is further ahead than this booth can be booked",
    Reason.OUTSIDE_HOURS: "that time is outside the hours this booth can be booked in",
    Reason.TOO_MANY_BOOKINGS: "this card already holds as many bookings at this branch as it may",
    Reason.TOO_LATE_TO_CANCEL: "it is too late to cancel this booking",
}


def request(
    connection: Connection, branch: str, resource: str, card_key: str, begin: datetime, end: datetime, now: datetime,
    *, desk_overrides: frozenset[Reason] = frozenset(),
) -> str:
    """Book if the booth's rules allow it; Refused (naming the rule) if not, SlotTaken if someone was first.

    ``desk_overrides`` are rules staff at the desk chose to set aside (only those in
    DESK_OVERRIDABLE); the ones this booking actually needed are stored with it."""
    if not desk_overrides <= DESK_OVERRIDABLE:
        raise BookingError(f"the desk cannot set aside {', '.join(sorted(desk_overrides - DESK_OVERRIDABLE))}")
    rules, tz = _rules(connection, branch, resource)
    _one_card_at_a_time(connection, card_key)
    held = connection.execute(select(func.count()).select_from(schema.reservations).where(
        schema.reservations.c.branch_id == branch, schema.reservations.c.card_key == card_key,
        schema.reservations.c.state == "confirmed", schema.reservations.c.end > now)).scalar_one()
    schedule = hours.branch_schedule(connection, branch)

    def check(overrides: frozenset[Reason]) -> Refusal | None:
        return check_booking(rules, begin, end, now, tz=tz, hours=schedule, bookings_held=held, overrides=overrides)

    refusal = check(desk_overrides)
    if refusal is not None:
        raise Refused(refusal, tz)
    needed = {reason for reason in desk_overrides if check(desk_overrides - {reason}) is not None}
    return book(connection, branch, resource, card_key, begin, end, now, overrides=needed)


def cancel_as_patron(connection: Connection, reference: str, card_key: str, now: datetime) -> None:
    """Cancel one's own booking, until the booth's cancelling deadline."""
    booking = get(connection, reference)
    if booking.card_key != card_key:
        raise BookingError(f"there is no booking {reference!r}")
    if booking.state == "cancelled":
        return
    branch = _branch_of(connection, reference)
    rules, tz = _rules(connection, branch, booking.resource)
    refusal = check_cancel(rules, booking.begin, now)
    if refusal is not None:
        raise Refused(refusal, tz)
    _change(connection, reference, now, state="cancelled")


def book(
    connection: Connection, branch: str, resource: str, card_key: str, begin: datetime, end: datetime, now: datetime,
    *, overrides: set[Reason] | frozenset[Reason] = frozenset(),
) -> str:
    """Store a confirmed booking, whose rules have been checked (``request``); returns its reference.

    SlotTaken when it overlaps another."""
    if end <= begin:
        raise BookingError("a booking must end after it begins")
    _check_resource(connection, branch, resource)
    while True:
        reference = "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH))
        taken = connection.execute(select(schema.reservations.c.id).where(schema.reservations.c.id == reference)).first()
        if taken is None:
            break
    try:
        with connection.begin_nested():
            connection.execute(insert(schema.reservations).values(
                id=reference, branch_id=branch, resource=resource, card_key=card_key, begin=begin, end=end,
                state="confirmed", created=now, updated=now, overrides=_overrides_text(overrides),
            ))
    except IntegrityError:
        raise SlotTaken("that time overlaps another booking of this booth") from None
    changelog.append(connection, "reservations", now, branch_id=branch, reservation_id=reference)
    return reference


def cancel(connection: Connection, reference: str, now: datetime) -> None:
    """Cancel at the desk: at any time; past the patrons' deadline, noted on the booking."""
    booking = get(connection, reference)
    if booking.state == "cancelled":
        return
    row = connection.execute(select(schema.reservations.c.branch_id, schema.reservations.c.overrides).where(
        schema.reservations.c.id == reference)).one()
    rules, _ = _rules(connection, row.branch_id, booking.resource)
    overrides = _overrides_set(row.overrides)
    if check_cancel(rules, booking.begin, now) is not None:
        overrides.add(Reason.TOO_LATE_TO_CANCEL)
    _change(connection, reference, now, state="cancelled", overrides=_overrides_text(overrides))


def free_rest(connection: Connection, branch: str, reference: str, at: datetime, now: datetime) -> bool:
    """After a no-show, end the booking at ``at`` so the rest of it is free to book; whether it changed."""
    row = connection.execute(select(schema.reservations).where(
        schema.reservations.c.id == reference, schema.reservations.c.branch_id == branch)).first()
    if row is None or row.state != "confirmed" or at >= row.end:
        return False
    if at <= row.begin:
        _change(connection, reference, now, state="cancelled")
    else:
        _change(connection, reference, now, end=at)
    return True


def get(connection: Connection, reference: str) -> Reservation:
    row = connection.execute(select(schema.reservations).where(schema.reservations.c.id == reference)).first()
    if row is None:
        raise BookingError(f"there is no booking {reference!r}")
    return Reservation(row.id, row.resource, row.card_key, row.begin, row.end, row.state)


def _change(connection: Connection, reference: str, now: datetime, **values) -> None:
    row = connection.execute(select(schema.reservations.c.branch_id).where(schema.reservations.c.id == reference)).one()
    connection.execute(update(schema.reservations).where(schema.reservations.c.id == reference).values(updated=now, **values))
    changelog.append(connection, "reservations", now, branch_id=row.branch_id, reservation_id=reference)


def overrides_of(connection: Connection, reference: str) -> frozenset[Reason]:
    """The rules the desk set aside for this booking."""
    stored = connection.execute(select(schema.reservations.c.overrides).where(schema.reservations.c.id == reference)).scalar_one()
    return frozenset(_overrides_set(stored))


def _rules(connection: Connection, branch: str, resource: str):
    try:
        rules = branches.booth_rules(connection, branch, resource)
    except branches.BranchError as exc:
        raise BookingError(str(exc)) from None
    zone = connection.execute(select(schema.branches.c.timezone).where(schema.branches.c.id == branch)).scalar_one()
    return rules, ZoneInfo(zone)


def _branch_of(connection: Connection, reference: str) -> str:
    return connection.execute(select(schema.reservations.c.branch_id).where(schema.reservations.c.id == reference)).scalar_one()


def _one_card_at_a_time(connection: Connection, card_key: str) -> None:
    """Make two bookings by one card wait for each other, so both cannot pass the count of bookings held.

    SQLite writes one transaction at a time anyway; PostgreSQL takes a lock for the card until commit."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:card))"), {"card": card_key})


def _overrides_text(overrides) -> str | None:
    return ",".join(sorted(reason.value for reason in overrides)) or None


def _overrides_set(stored: str | None) -> set[Reason]:
    return {Reason(value) for value in stored.split(",")} if stored else set()


def _check_resource(connection: Connection, branch: str, resource: str) -> None:
    resources = schema.resources
    found = connection.execute(select(resources.c.resource).where(resources.c.branch_id == branch, resources.c.resource == resource)).first()
    if found is None:
        raise BookingError(f"branch {branch!r} has no bookable resource {resource!r}")
