"""Booking as a patron or the desk asks, on each engine: the booth's stored rules decide, and the desk's overrides are on record.

Every moment is relative to NOW, a Friday noon two days before the clocks go forward
in Helsinki.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from central import bookings, branches, db, hours, schema
from central.booking_rules import BoothRules, Reason, Refusal
from device.schedule import Period
from harness import all_at_once, card

HELSINKI = ZoneInfo("Europe/Helsinki")
NOW = datetime(2027, 3, 26, 12, 0, tzinfo=HELSINKI).astimezone(timezone.utc)
OPEN = [Period(7 * 60, 10 * 60, "self_service"), Period(10 * 60, 20 * 60, "staffed")]


def at(days: int, hhmm: str) -> datetime:
    hour, minute = map(int, hhmm.split(":"))
    return datetime.combine(NOW.astimezone(HELSINKI).date() + timedelta(days=days), time(hour, minute), tzinfo=HELSINKI).astimezone(timezone.utc)


@pytest.fixture
def engine(engine):
    """Kallio keeps its hours centrally; toolo, with one booth, keeps its own."""
    with db.writing(engine) as connection:
        branches.put_branch(connection, "toolo", "Töölö")
        branches.put_booth(connection, "toolo", "booth-1", "Work booth")
        for weekday in range(7):
            hours.set_weekday(connection, "kallio", weekday, OPEN if weekday < 6 else [Period(0, 1440, "self_service")])
    return engine


def request(engine, n: int, begin: datetime, length_hours: float, *, branch="kallio", resource="booth-1", now=NOW, **args) -> str:
    with db.writing(engine) as connection:
        return bookings.request(connection, branch, resource, card(n), begin, begin + timedelta(hours=length_hours), now, **args)


def refusal(engine, *args, **kwargs) -> Refusal:
    with pytest.raises(bookings.Refused) as refused:
        request(engine, *args, **kwargs)
    return refused.value.refusal


def stored(engine) -> list:
    with db.reading(engine) as connection:
        return connection.execute(select(schema.reservations).order_by(schema.reservations.c.begin)).all()


def set_rules(engine, resource="booth-1", **rules) -> BoothRules:
    with db.writing(engine) as connection:
        return branches.put_booth(connection, "kallio", resource, "Work booth", **rules)


def test_a_new_booth_has_the_default_rules_and_a_rename_keeps_changed_ones(engine):
    with db.reading(engine) as connection:
        assert branches.booth_rules(connection, "kallio", "booth-1") == BoothRules(60, 240, 30, "both", 14, 2, 0)
    set_rules(engine, max_minutes=180, within="self_service", cancel_until_minutes=120)
    with db.writing(engine) as connection:
        branches.put_booth(connection, "kallio", "booth-1", "Quiet booth")
        assert branches.booth_rules(connection, "kallio", "booth-1") == BoothRules(60, 180, 30, "self_service", 14, 2, 120)


def test_rules_that_cannot_work_are_refused_and_the_old_ones_stay(engine):
    with pytest.raises(branches.BranchError, match="booth booth-1: slot of 25 minutes: an hour must divide into whole slots"):
        set_rules(engine, slot_minutes=25)
    with db.reading(engine) as connection:
        assert branches.booth_rules(connection, "kallio", "booth-1").slot_minutes == 30


def test_a_booking_outside_the_hours_kept_centrally_is_refused_with_the_nearest_that_fits(engine):
    assert refusal(engine, 1, at(1, "19:00"), 2) == Refusal(Reason.OUTSIDE_HOURS, (at(1, "18:00"), at(1, "20:00")))
    set_rules(engine, within="self_service")
    assert refusal(engine, 1, at(1, "11:00"), 1) == Refusal(Reason.OUTSIDE_HOURS, (at(1, "09:00"), at(1, "10:00")))
    request(engine, 1, at(1, "08:00"), 2)
    assert [(row.begin, row.end, row.overrides) for row in stored(engine)] == [(at(1, "08:00"), at(1, "10:00"), None)]


def test_a_branch_that_keeps_its_own_hours_is_not_checked_against_hours_here(engine):
    request(engine, 1, at(1, "23:00"), 1, branch="toolo")
    assert len(stored(engine)) == 1


def test_the_refusal_says_why_in_a_sentence_for_the_console(engine):
    with pytest.raises(bookings.Refused, match=r"a booking starts and lasts in whole slots of this booth; "
                                               r"the nearest that can be booked is 2027-03-27 12:00–13:00"):
        request(engine, 1, at(1, "12:10"), 1)


def test_a_card_holds_at_most_max_bookings_at_one_branch_and_ended_or_cancelled_ones_do_not_count(engine):
    first = request(engine, 1, at(1, "12:00"), 1)
    request(engine, 1, at(2, "12:00"), 1, resource="booth-2")  # another booth of the same branch counts too
    assert refusal(engine, 1, at(3, "12:00"), 1) == Refusal(Reason.TOO_MANY_BOOKINGS)
    request(engine, 1, at(3, "12:00"), 1, branch="toolo")  # another branch keeps its own count
    request(engine, 2, at(3, "12:00"), 1)  # another card
    with db.writing(engine) as connection:
        bookings.cancel(connection, first, NOW)
    request(engine, 1, at(3, "14:00"), 1)
    later = at(2, "13:30")  # the booking on day 2 has ended, so it no longer counts
    request(engine, 1, at(4, "12:00"), 1, now=later)


def test_the_desk_may_set_aside_some_rules_and_exactly_those_needed_are_recorded(engine):
    assert refusal(engine, 1, at(20, "12:00"), 1) == Refusal(Reason.TOO_FAR_AHEAD)
    desk = frozenset({Reason.TOO_FAR_AHEAD, Reason.TOO_MANY_BOOKINGS})
    reference = request(engine, 1, at(20, "12:00"), 1, desk_overrides=desk)
    with db.reading(engine) as connection:
        assert bookings.overrides_of(connection, reference) == {Reason.TOO_FAR_AHEAD}
    plain = request(engine, 2, at(1, "12:00"), 1, desk_overrides=desk)
    with db.reading(engine) as connection:
        assert bookings.overrides_of(connection, plain) == frozenset()
    with pytest.raises(bookings.BookingError, match="the desk cannot set aside outside_hours"):
        request(engine, 3, at(1, "21:00"), 1, desk_overrides=frozenset({Reason.OUTSIDE_HOURS}))
    assert refusal(engine, 3, at(1, "21:00"), 1, desk_overrides=desk).reason == Reason.OUTSIDE_HOURS


def test_a_patron_cancels_until_the_deadline_and_the_desk_after_it_on_record(engine):
    set_rules(engine, cancel_until_minutes=60)
    reference = request(engine, 1, at(1, "12:00"), 1)
    with db.writing(engine) as connection:
        with pytest.raises(bookings.BookingError, match="there is no booking"):
            bookings.cancel_as_patron(connection, reference, card(2), NOW)
    with db.writing(engine) as connection, pytest.raises(bookings.Refused) as refused:
        bookings.cancel_as_patron(connection, reference, card(1), at(1, "11:01"))
    assert refused.value.refusal == Refusal(Reason.TOO_LATE_TO_CANCEL)
    with db.writing(engine) as connection:
        bookings.cancel(connection, reference, at(1, "11:01"))
        assert bookings.get(connection, reference).state == "cancelled"
        assert bookings.overrides_of(connection, reference) == {Reason.TOO_LATE_TO_CANCEL}
    in_time = request(engine, 1, at(2, "12:00"), 1)
    with db.writing(engine) as connection:
        bookings.cancel_as_patron(connection, in_time, card(1), at(2, "11:00"))
        assert bookings.get(connection, in_time).state == "cancelled"
        assert bookings.overrides_of(connection, in_time) == frozenset()


def test_on_the_spring_night_a_booking_is_measured_in_real_time(engine):
    set_rules(engine, max_minutes=180)
    begin = at(2, "01:00")  # Sunday: the clocks go forward at 03:00
    end = datetime.combine(begin.astimezone(HELSINKI).date(), time(5, 0), tzinfo=HELSINKI)  # four hours on the wall
    with db.writing(engine) as connection:
        bookings.request(connection, "kallio", "booth-1", card(1), begin, end, NOW)
    [row] = stored(engine)
    assert row.end - row.begin == timedelta(hours=3)


def test_one_card_racing_for_many_slots_gets_no_more_than_its_limit(engine):
    won, refused, failed = all_at_once(
        8, lambda n: request(engine, 1, at(1, "10:00") + timedelta(hours=n), 1, resource=("booth-1", "booth-2")[n % 2]), bookings.Refused)
    assert failed == []
    assert len(won) == 2 and [exc.refusal.reason for exc in refused] == [Reason.TOO_MANY_BOOKINGS] * 6
