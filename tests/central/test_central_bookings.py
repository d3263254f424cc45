"""Booth bookings on the central side: never two at once, however they race."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from central import bookings, changelog, db, schema
from harness import all_at_once, card

NOW = datetime.now(timezone.utc).replace(microsecond=0)
SLOT = NOW + timedelta(days=2)


def book(engine, n: int, begin: datetime, hours: float, resource: str = "booth-1") -> str:
    with db.writing(engine) as connection:
        return bookings.book(connection, "kallio", resource, card(n), begin, begin + timedelta(hours=hours), NOW)


def test_fifty_people_pressing_book_on_one_slot_at_once_leaves_exactly_one_booking(engine):
    """Each tries a different but overlapping stretch, so no single row lock could serialise them."""
    won, lost, failed = all_at_once(50, lambda n: book(engine, n, SLOT + timedelta(minutes=n), 1), bookings.SlotTaken)
    assert failed == []
    assert len(won) == 1 and len(lost) == 49
    with db.reading(engine) as connection:
        rows = connection.execute(select(schema.reservations).where(schema.reservations.c.state == "confirmed")).all()
    assert [row.id for row in rows] == won


def test_back_to_back_bookings_and_other_booths_do_not_clash(engine):
    book(engine, 1, SLOT, 2)
    book(engine, 2, SLOT + timedelta(hours=2), 1)  # starts as the first ends
    book(engine, 3, SLOT, 2, resource="booth-2")
    with pytest.raises(bookings.SlotTaken):
        book(engine, 4, SLOT + timedelta(hours=1, minutes=30), 1)


def test_a_cancelled_booking_frees_its_time(engine):
    first = book(engine, 1, SLOT, 2)
    with db.writing(engine) as connection:
        bookings.cancel(connection, first, NOW)
    book(engine, 2, SLOT + timedelta(minutes=30), 1)


def test_a_no_show_frees_the_rest_of_the_booking_and_the_branch_hears_of_it(engine):
    reference = book(engine, 1, SLOT, 3)
    with db.reading(engine) as connection:
        before = changelog.head(connection, "reservations").seq
    with db.writing(engine) as connection:
        assert bookings.free_rest(connection, "kallio", reference, SLOT + timedelta(minutes=15), NOW)
    with db.reading(engine) as connection:
        assert bookings.get(connection, reference).end == SLOT + timedelta(minutes=15)
        assert changelog.head(connection, "reservations").seq == before + 1
    book(engine, 2, SLOT + timedelta(minutes=30), 2)


@pytest.mark.parametrize("resource, begin, hours, message", [
    ("booth-9", SLOT, 1, "no bookable resource"),
    ("booth-1", SLOT, 0, "must end after it begins"),
])
def test_an_impossible_booking_says_why(engine, resource, begin, hours, message):
    with pytest.raises(bookings.BookingError, match=message):
        book(engine, 1, begin, hours, resource)
