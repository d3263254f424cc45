"""A booth's booking rules as one pure decision: each rule's refusal, and the nearest booking it allows.

Every moment is relative to NOW, a Friday noon two days before the clocks go forward
in Helsinki (Sunday 28 March 2027, 03:00 → 04:00), so the DST rows land on the
nights the clocks change.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from central.booking_rules import BoothRules, Reason, Refusal, check_booking, check_cancel
from device.schedule import Period, Schedule

HELSINKI = ZoneInfo("Europe/Helsinki")
NOW = datetime(2027, 3, 26, 12, 0, tzinfo=HELSINKI)
SPRING_SUNDAY = 2  # days after NOW: the clocks go forward at 03:00
AUTUMN_SUNDAY = (datetime(2027, 10, 31, tzinfo=HELSINKI).date() - NOW.date()).days  # back at 04:00

#: Weekdays: self-service early and late, staffed in between; Sundays self-service all day.
WEEKDAY = (Period(7 * 60, 10 * 60, "self_service"), Period(10 * 60, 20 * 60, "staffed"), Period(20 * 60, 22 * 60, "self_service"))
HOURS = Schedule({**{day: WEEKDAY for day in range(6)}, 6: (Period(0, 1440, "self_service"),)}, {}, HELSINKI)
RULES = BoothRules()


def at(days: int, hhmm: str, fold: int = 0) -> datetime:
    """A local wall time ``days`` after NOW's date."""
    hours, minutes = map(int, hhmm.split(":"))
    return datetime.combine(NOW.date() + timedelta(days=days), time(hours, minutes, fold=fold), tzinfo=HELSINKI)


def span(begin: datetime, hours: float) -> tuple[datetime, datetime]:
    """``hours`` of real time from ``begin``, as UTC arithmetic (wall-clock arithmetic would ignore the jump)."""
    utc = begin.astimezone(ZoneInfo("UTC"))
    return utc, utc + timedelta(hours=hours)


ROWS = [
    # (what, rules, begin, length in real hours, held, desk overrides, reason, alternative)
    ("an ordinary staffed-hours booking", RULES, at(1, "12:00"), 2, 0, (), None, None),
    ("already begun: the next slot instead", RULES, at(0, "11:00"), 2, 0, (), Reason.IN_THE_PAST, span(at(0, "12:00"), 2)),
    ("off the grid: the nearest slot and a whole number of slots",
     RULES, at(1, "12:10"), 1 + 5 / 60, 0, (), Reason.OFF_GRID, span(at(1, "12:00"), 1)),
    ("off the grid by its length only", RULES, at(1, "12:00"), 1.25, 0, (), Reason.OFF_GRID, span(at(1, "12:00"), 1.5)),
    ("too short: the shortest from the same start", RULES, at(1, "12:00"), 0.5, 0, (), Reason.TOO_SHORT, span(at(1, "12:00"), 1)),
    ("too long: the longest from the same start", RULES, at(1, "12:00"), 5, 0, (), Reason.TOO_LONG, span(at(1, "12:00"), 4)),
    ("the last day ahead is bookable", RULES, at(14, "12:00"), 1, 0, (), None, None),
    ("one day further is not", RULES, at(15, "12:00"), 1, 0, (), Reason.TOO_FAR_AHEAD, None),
    ("the desk may book further ahead", RULES, at(15, "12:00"), 1, 0, (Reason.TOO_FAR_AHEAD,), None, None),
    ("past closing: the nearest stretch that fits, earlier the same day",
     RULES, at(1, "21:00"), 2, 0, (), Reason.OUTSIDE_HOURS, span(at(1, "20:00"), 2)),
    ("before opening: the nearest stretch that fits, later",
     RULES, at(1, "06:00"), 1, 0, (), Reason.OUTSIDE_HOURS, span(at(1, "07:00"), 1)),
    ("self-service only: staffed hours are outside, nearest self-service stretch",
     replace(RULES, within="self_service"), at(1, "11:00"), 1, 0, (), Reason.OUTSIDE_HOURS, span(at(1, "09:00"), 1)),
    ("staffed only: crossing into self-service is outside",
     replace(RULES, within="staffed"), at(1, "19:00"), 2, 0, (), Reason.OUTSIDE_HOURS, span(at(1, "18:00"), 2)),
    ("both: a booking may run from self-service into staffed hours", RULES, at(1, "09:00"), 3, 0, (), None, None),
    ("the card holds as many as it may", RULES, at(1, "12:00"), 1, 2, (), Reason.TOO_MANY_BOOKINGS, None),
    ("one fewer is fine", RULES, at(1, "12:00"), 1, 1, (), None, None),
    ("the desk may give one more", RULES, at(1, "12:00"), 1, 2, (Reason.TOO_MANY_BOOKINGS,), None, None),
    ("the desk cannot set aside the hours", RULES, at(1, "21:00"), 2, 0, (Reason.TOO_FAR_AHEAD, Reason.TOO_MANY_BOOKINGS),
     Reason.OUTSIDE_HOURS, span(at(1, "20:00"), 2)),
    # -- the clocks going forward: 01:00–05:00 on the wall is three real hours --
    ("spring night: four wall-clock hours are three real ones",
     replace(RULES, max_minutes=180), at(SPRING_SUNDAY, "01:00"), 3, 0, (), None, None),
    ("spring night: 04:00 just after the jump is on the grid", RULES, at(SPRING_SUNDAY, "04:00"), 1, 0, (), None, None),
    ("spring night: too long is measured in real time",
     replace(RULES, max_minutes=120), at(SPRING_SUNDAY, "01:00"), 3, 0, (), Reason.TOO_LONG, span(at(SPRING_SUNDAY, "01:00"), 2)),
    # -- the clocks going back: 01:00–04:00 on the wall is four real hours --
    ("autumn night: three wall-clock hours are four real ones, too long for three",
     replace(RULES, max_minutes=180, days_ahead=366), at(AUTUMN_SUNDAY, "01:00"), 4, 0, (), Reason.TOO_LONG,
     span(at(AUTUMN_SUNDAY, "01:00"), 3)),
    ("autumn night: the repeated 03:30 is on the grid both times",
     replace(RULES, days_ahead=366), at(AUTUMN_SUNDAY, "03:30", fold=1), 1, 0, (), None, None),
]


@pytest.mark.parametrize("what, rules, begin, hours, held, overrides, reason, alternative", ROWS, ids=[row[0] for row in ROWS])
def test_each_rule_refuses_with_its_reason_and_the_nearest_allowed_booking(what, rules, begin, hours, held, overrides, reason, alternative):
    begin, end = span(begin, hours)
    refusal = check_booking(rules, begin, end, NOW, tz=HELSINKI, hours=HOURS, bookings_held=held, overrides=frozenset(overrides))
    assert refusal == (Refusal(reason, alternative) if reason else None)


def test_the_days_ahead_are_the_branchs_local_days_across_the_spring_change():
    late_friday = at(0, "23:30")  # 21:30 UTC: still Friday at the branch
    rules = replace(RULES, days_ahead=2)
    sunday_night, monday = span(at(2, "23:00"), 1), span(at(3, "00:00"), 1)
    assert check_booking(rules, *sunday_night, late_friday, tz=HELSINKI, hours=HOURS, bookings_held=0) is None
    assert check_booking(rules, *monday, late_friday, tz=HELSINKI, hours=None, bookings_held=0) == Refusal(Reason.TOO_FAR_AHEAD)


def test_without_hours_kept_centrally_the_open_hours_are_not_checked_here():
    night = span(at(1, "23:00"), 1)
    assert check_booking(RULES, *night, NOW, tz=HELSINKI, hours=None, bookings_held=0) is None
    assert check_booking(RULES, *night, NOW, tz=HELSINKI, hours=HOURS, bookings_held=0).reason == Reason.OUTSIDE_HOURS


def test_no_alternative_when_no_stretch_of_that_length_is_open():
    short_days = Schedule({day: (Period(600, 660, "staffed"),) for day in range(7)}, {}, HELSINKI)
    refusal = check_booking(RULES, *span(at(1, "10:00"), 2), NOW, tz=HELSINKI, hours=short_days, bookings_held=0)
    assert refusal == Refusal(Reason.OUTSIDE_HOURS, None)


@pytest.mark.parametrize("minutes_before, overrides, refused", [
    (61, (), False), (60, (), False), (59, (), True), (-10, (), True), (59, (Reason.TOO_LATE_TO_CANCEL,), False),
])
def test_a_patron_may_cancel_until_the_deadline(minutes_before, overrides, refused):
    rules = replace(RULES, cancel_until_minutes=60)
    begin = NOW + timedelta(minutes=minutes_before)
    expected = Refusal(Reason.TOO_LATE_TO_CANCEL) if refused else None
    assert check_cancel(rules, begin, NOW, overrides=frozenset(overrides)) == expected


def test_by_default_a_patron_may_cancel_until_the_start():
    assert check_cancel(RULES, NOW, NOW) is None
    assert check_cancel(RULES, NOW - timedelta(minutes=1), NOW) == Refusal(Reason.TOO_LATE_TO_CANCEL)


@pytest.mark.parametrize("changes, problem", [
    ({"slot_minutes": 25}, "slot of 25 minutes: an hour must divide into whole slots"),
    ({"slot_minutes": 120}, "slot of 120 minutes"),
    ({"slot_minutes": 60, "min_minutes": 90}, "must be whole slots of 60 minutes"),
    ({"min_minutes": 300}, "the shortest booking (300 min) must be more than 0 and at most the longest (240 min)"),
    ({"within": "evenings"}, "within 'evenings': use one of self_service, staffed, both"),
    ({"days_ahead": -1}, "-1 days ahead"),
    ({"max_bookings": 0}, "0 bookings per card: at least 1"),
    ({"cancel_until_minutes": -5}, "cancel until -5 minutes before"),
])
def test_rules_that_cannot_work_are_named(changes, problem):
    assert any(problem in found for found in replace(RULES, **changes).problems())
    assert RULES.problems() == []
