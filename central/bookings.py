"""Booth bookings on the central side: made, cancelled, shortened; never two at once.

The database refuses an overlapping confirmed booking of the same booth (an
exclusion constraint on PostgreSQL, triggers on SQLite), so two people pressing
"book" at the same moment cannot both win, whatever the timing between processes.
Every change appends to the reservations log, so it reaches the branch next round.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from central import changelog, schema
from device.policy import Reservation

#: Booking references are read aloud at the desk: no 0/O, 1/I/L, and no vowels that spell words.
REFERENCE_ALPHABET = "23456789BCDFGHJKMNPQRSTVWXZ"
REFERENCE_LENGTH = 6


class BookingError(ValueError):
    """A booking that cannot be made or changed; the message says why."""


class SlotTaken(BookingError):
    """Someone else holds (part of) that time: the database refused the overlap."""


def book(connection: Connection, branch: str, resource: str, card_key: str, begin: datetime, end: datetime, now: datetime) -> str:
    """A confirmed booking; returns its reference. SlotTaken when it overlaps another."""
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
                state="confirmed", created=now, updated=now,
            ))
    except IntegrityError:
        raise SlotTaken("that time overlaps another booking of this booth") from None
    changelog.append(connection, "reservations", now, branch_id=branch, reservation_id=reference)
    return reference


def cancel(connection: Connection, reference: str, now: datetime) -> None:
    booking = get(connection, reference)
    if booking.state == "cancelled":
        return
    _change(connection, reference, now, state="cancelled")


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


def _check_resource(connection: Connection, branch: str, resource: str) -> None:
    resources = schema.resources
    found = connection.execute(select(resources.c.resource).where(resources.c.branch_id == branch, resources.c.resource == resource)).first()
    if found is None:
        raise BookingError(f"branch {branch!r} has no bookable resource {resource!r}")
