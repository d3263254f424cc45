"""Opening hours as the doors see them: the mode at an instant and the next change.

Times in the tests are written the way staff write hours, in Helsinki wall time,
and the expected instants in UTC, the way the door controller acts on them.
"""

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from device.schedule import (
    Period,
    Schedule,
    ScheduleError,
    check_periods,
    format_hhmm,
    parse_hhmm,
)

HELSINKI = ZoneInfo("Europe/Helsinki")
UTC = timezone.utc

SPRING = {2026: date(2026, 3, 29), 2027: date(2027, 3, 28)}
AUTUMN = {2026: date(2026, 10, 25), 2027: date(2027, 10, 31)}
MONDAY = date(2026, 11, 23)
CHRISTMAS_EVE = date(2026, 12, 24)  # a Thursday
SUNDAY = 6


def period(start: str, end: str, mode: str) -> Period:
    return Period(parse_hhmm(start), parse_hhmm(end, end=True), mode)


def at(day: date, hhmm: str, *, second: int = 0, fold: int = 0) -> datetime:
    """A Helsinki wall time on a day."""
    hours, minutes = map(int, hhmm.split(":"))
    return datetime.combine(day, time(hours, minutes, second), tzinfo=HELSINKI).replace(fold=fold)


def utc(day: date, hhmm: str) -> datetime:
    hours, minutes = map(int, hhmm.split(":"))
    return datetime.combine(day, time(hours, minutes), tzinfo=UTC)


def changes(schedule: Schedule, start: datetime, count: int) -> list[tuple[datetime, str]]:
    found = []
    for _ in range(count):
        change = schedule.next_change(start)
        assert change is not None
        found.append(change)
        start = change[0]
    return found


def real_hours(segment: tuple[datetime, datetime, str]) -> float:
    start, end, _ = segment
    return (end.astimezone(UTC) - start.astimezone(UTC)) / timedelta(hours=1)


# An ordinary weekday pattern: self-service mornings and evenings, staff in the
# afternoon, a gap at lunch, closed at weekends.
WEEKDAY = (
    period("07:00", "10:00", "self_service"),
    period("12:00", "16:00", "staffed"),
    period("16:00", "21:00", "self_service"),
)
ORDINARY = Schedule(weekly={weekday: WEEKDAY for weekday in range(5)}, exceptions={})


class TestHhmm:
    @pytest.mark.parametrize(
        ("text", "minutes"), [("00:00", 0), ("07:00", 420), ("7:05", 425), ("12:30", 750), ("23:59", 1439)]
    )
    def test_reads_wall_times(self, text, minutes):
        assert parse_hhmm(text) == minutes
        assert parse_hhmm(text, end=True) == minutes

    def test_midnight_as_an_end_is_the_end_of_the_day(self):
        assert parse_hhmm("24:00", end=True) == 1440

    def test_midnight_cannot_start_a_period_as_24_00(self):
        with pytest.raises(ScheduleError, match="24:00 can only end a period"):
            parse_hhmm("24:00")

    @pytest.mark.parametrize(
        "text", ["24:01", "25:00", "12:60", "7", "07:00:00", "", "07.00", " 07:00", "１２:００", "-1:00"]
    )
    def test_rejects_what_is_not_a_wall_time(self, text):
        with pytest.raises(ScheduleError, match="is not a time"):
            parse_hhmm(text, end=True)

    def test_rejects_a_number(self):
        with pytest.raises(ScheduleError, match="420 is not a time"):
            parse_hhmm(420)

    @pytest.mark.parametrize(("minutes", "text"), [(0, "00:00"), (425, "07:05"), (1439, "23:59"), (1440, "24:00")])
    def test_writes_wall_times(self, minutes, text):
        assert format_hhmm(minutes) == text

    def test_refuses_to_write_a_time_outside_the_day(self):
        with pytest.raises(ValueError):
            format_hhmm(1441)


class TestCheckPeriods:
    def test_returns_the_periods_in_time_order(self):
        evening, morning = period("16:00", "21:00", "staffed"), period("07:00", "16:00", "self_service")
        assert check_periods([evening, morning], "Monday") == (morning, evening)

    @pytest.mark.parametrize(
        ("periods", "label", "message"),
        [
            ([Period(600, 540, "staffed")], "Monday", "Monday: 10:00–09:00 ends before it starts"),
            (
                [period("11:00", "15:00", "staffed"), period("08:00", "12:00", "self_service")],
                "2026-12-24",
                "2026-12-24: 08:00–12:00 overlaps 11:00–15:00",
            ),
            (
                [period("08:00", "12:00", "staffed"), period("08:00", "12:00", "staffed")],
                "Friday",
                "Friday: 08:00–12:00 overlaps 08:00–12:00",
            ),
            ([Period(600, 600, "staffed")], "Monday", "Monday: 10:00–10:00 is empty"),
            (
                [period("08:00", "12:00", "open")],
                "Sunday",
                "Sunday: 08:00–12:00 mode 'open' is not one of staffed, self_service, closed",
            ),
            ([Period(-1, 60, "staffed")], "Monday", "Monday: start -1 is not a minute of the day (0–1439)"),
            ([Period(1440, 1440, "staffed")], "Monday", "Monday: start 1440 is not a minute of the day (0–1439)"),
            ([Period(0, 1441, "staffed")], "Monday", "Monday: end 1441 is not a minute of the day (1–1440)"),
            ([Period("08:00", 600, "staffed")], "Monday", "Monday: start '08:00' is not a minute of the day"),
            ([(480, 600, "staffed")], "Monday", "Monday: (480, 600, 'staffed') is not a Period"),
        ],
    )
    def test_names_what_is_wrong(self, periods, label, message):
        with pytest.raises(ScheduleError) as raised:
            check_periods(periods, label)
        assert str(raised.value).startswith(message)

    def test_back_to_back_periods_do_not_overlap(self):
        periods = [period("07:00", "12:00", "self_service"), period("12:00", "24:00", "staffed")]
        assert len(check_periods(periods, "Monday")) == 2


class TestScheduleIsCheckedWhenMade:
    def test_a_bad_weekday_period_is_reported_with_its_weekday(self):
        with pytest.raises(ScheduleError, match="^Tuesday: 10:00–09:00 ends before it starts$"):
            Schedule(weekly={1: (Period(600, 540, "staffed"),)}, exceptions={})

    def test_a_bad_exception_is_reported_with_its_date(self):
        overlapping = (period("08:00", "12:00", "staffed"), period("11:00", "15:00", "staffed"))
        with pytest.raises(ScheduleError, match="^2026-12-24: 08:00–12:00 overlaps 11:00–15:00$"):
            Schedule(weekly={}, exceptions={CHRISTMAS_EVE: overlapping})

    def test_weekdays_are_0_to_6(self):
        with pytest.raises(ScheduleError, match="weekday 7 is not one of 0"):
            Schedule(weekly={7: ()}, exceptions={})

    def test_an_exception_is_keyed_by_a_date_not_a_datetime(self):
        with pytest.raises(ScheduleError, match="is not a date"):
            Schedule(weekly={}, exceptions={datetime(2026, 12, 24): ()})

    def test_periods_given_in_any_order_are_used_in_time_order(self):
        schedule = Schedule(weekly={0: list(reversed(WEEKDAY))}, exceptions={})
        assert schedule.periods_on(MONDAY) == WEEKDAY


class TestModeAt:
    @pytest.mark.parametrize(
        ("hhmm", "second", "mode"),
        [
            ("06:59", 59, "closed"),
            ("07:00", 0, "self_service"),  # a period includes its start
            ("09:59", 59, "self_service"),
            ("10:00", 0, "closed"),  # ...but not its end; the lunch gap is closed
            ("11:59", 59, "closed"),
            ("12:00", 0, "staffed"),
            ("16:00", 0, "self_service"),
            ("20:59", 59, "self_service"),
            ("21:00", 0, "closed"),
        ],
    )
    def test_an_ordinary_weekday(self, hhmm, second, mode):
        assert ORDINARY.mode_at(at(MONDAY, hhmm, second=second)) == mode

    def test_a_day_without_periods_is_closed(self):
        assert ORDINARY.mode_at(at(MONDAY + timedelta(days=6), "12:00")) == "closed"  # Sunday

    def test_the_instant_counts_not_how_it_is_written(self):
        # 07:00 in Helsinki in November is 05:00 UTC and 00:00 in New York.
        assert ORDINARY.mode_at(utc(MONDAY, "05:00")) == "self_service"
        assert ORDINARY.mode_at(datetime(2026, 11, 23, 0, 0, tzinfo=ZoneInfo("America/New_York"))) == "self_service"
        assert ORDINARY.mode_at(utc(MONDAY, "04:59")) == "closed"

    def test_an_exception_replaces_the_weekly_pattern(self):
        schedule = Schedule(
            weekly={weekday: WEEKDAY for weekday in range(5)},
            exceptions={CHRISTMAS_EVE: (period("08:00", "12:00", "self_service"),)},
        )
        assert schedule.periods_on(CHRISTMAS_EVE) == (period("08:00", "12:00", "self_service"),)
        assert schedule.mode_at(at(CHRISTMAS_EVE, "07:30")) == "closed"
        assert schedule.mode_at(at(CHRISTMAS_EVE, "08:00")) == "self_service"
        assert schedule.mode_at(at(CHRISTMAS_EVE, "13:00")) == "closed"
        assert schedule.mode_at(at(CHRISTMAS_EVE + timedelta(days=1), "13:00")) == "staffed"

    def test_an_exception_without_periods_closes_the_day(self):
        schedule = Schedule(weekly={weekday: WEEKDAY for weekday in range(5)}, exceptions={CHRISTMAS_EVE: ()})
        assert schedule.periods_on(CHRISTMAS_EVE) == ()
        assert {schedule.mode_at(at(CHRISTMAS_EVE, f"{hour:02d}:30")) for hour in range(24)} == {"closed"}

    def test_a_naive_datetime_is_refused(self):
        with pytest.raises(ValueError, match="not a timezone-aware datetime"):
            ORDINARY.mode_at(datetime(2026, 11, 23, 12, 0))


class TestNextChange:
    @pytest.mark.parametrize(
        ("start", "change"),
        [
            (at(MONDAY, "06:00"), (utc(MONDAY, "05:00"), "self_service")),
            (at(MONDAY, "07:00"), (utc(MONDAY, "08:00"), "closed")),
            (at(MONDAY, "09:59", second=59), (utc(MONDAY, "08:00"), "closed")),
            (at(MONDAY, "10:00"), (utc(MONDAY, "10:00"), "staffed")),
            (at(MONDAY, "16:00"), (utc(MONDAY, "19:00"), "closed")),
            # Friday evening: closed all weekend, opens on Monday morning.
            (at(date(2026, 11, 27), "21:00"), (utc(date(2026, 11, 30), "05:00"), "self_service")),
        ],
    )
    def test_on_ordinary_days(self, start, change):
        assert ORDINARY.next_change(start) == change

    def test_is_given_in_utc(self):
        instant, _ = ORDINARY.next_change(at(MONDAY, "06:00"))
        assert instant.utcoffset() == timedelta(0)

    def test_self_service_through_midnight_does_not_change_at_midnight(self):
        schedule = Schedule(
            weekly={0: (period("20:00", "24:00", "self_service"),), 1: (period("00:00", "02:00", "self_service"),)},
            exceptions={},
        )
        # 02:00 on Tuesday in Helsinki is 00:00 UTC.
        assert schedule.next_change(at(MONDAY, "21:00")) == (utc(MONDAY + timedelta(days=1), "00:00"), "closed")

    def test_a_different_mode_after_midnight_is_a_change_at_midnight(self):
        schedule = Schedule(
            weekly={0: (period("20:00", "24:00", "self_service"),), 1: (period("00:00", "02:00", "staffed"),)},
            exceptions={},
        )
        assert schedule.next_change(at(MONDAY, "21:00")) == (utc(MONDAY, "22:00"), "staffed")

    def test_an_exception_day_is_where_the_change_happens(self):
        schedule = Schedule(weekly={}, exceptions={CHRISTMAS_EVE: (period("08:00", "12:00", "staffed"),)})
        assert schedule.next_change(at(date(2026, 12, 20), "12:00")) == (utc(CHRISTMAS_EVE, "06:00"), "staffed")

    def test_nothing_beyond_the_horizon(self):
        opening_day = MONDAY + timedelta(days=20)
        schedule = Schedule(weekly={}, exceptions={opening_day: (period("08:00", "12:00", "staffed"),)})
        assert schedule.next_change(at(MONDAY, "12:00")) is None
        assert schedule.next_change(at(MONDAY, "12:00"), horizon_days=21) == (utc(opening_day, "06:00"), "staffed")

    def test_never_changes_when_always_closed(self):
        assert Schedule(weekly={}, exceptions={}).next_change(at(MONDAY, "12:00")) is None

    def test_a_naive_datetime_is_refused(self):
        with pytest.raises(ValueError, match="not a timezone-aware datetime"):
            ORDINARY.next_change(datetime(2026, 11, 23, 12, 0))


@pytest.mark.parametrize("year", sorted(SPRING))
class TestSpringForward:
    """The last Sunday of March: at 03:00 the clocks jump to 04:00 (01:00 UTC)."""

    def test_a_period_starting_at_a_skipped_time_starts_when_the_clocks_jump(self, year):
        day = SPRING[year]
        schedule = Schedule(weekly={SUNDAY: (period("03:30", "05:00", "self_service"),)}, exceptions={})
        assert schedule.mode_at(utc(day, "00:59") + timedelta(seconds=59)) == "closed"  # 02:59:59 EET
        assert schedule.mode_at(utc(day, "01:00")) == "self_service"  # 04:00 EEST
        assert changes(schedule, at(day, "01:00"), 2) == [
            (utc(day, "01:00"), "self_service"),
            (utc(day, "02:00"), "closed"),  # 05:00 EEST
        ]

    def test_a_boundary_in_the_skipped_hour_happens_at_the_jump(self, year):
        day = SPRING[year]
        schedule = Schedule(
            weekly={SUNDAY: (period("02:00", "03:30", "staffed"), period("03:30", "05:00", "self_service"))},
            exceptions={},
        )
        assert changes(schedule, at(day, "01:00"), 3) == [
            (utc(day, "00:00"), "staffed"),
            (utc(day, "01:00"), "self_service"),
            (utc(day, "02:00"), "closed"),
        ]

    def test_a_period_ending_in_the_skipped_hour_ends_at_the_jump(self, year):
        day = SPRING[year]
        schedule = Schedule(weekly={SUNDAY: (period("01:00", "03:30", "self_service"),)}, exceptions={})
        assert schedule.next_change(at(day, "02:30")) == (utc(day, "01:00"), "closed")

    def test_a_change_hidden_in_the_skipped_hour_never_happens(self, year):
        day = SPRING[year]
        around_the_clock = (period("00:00", "24:00", "self_service"),)
        schedule = Schedule(
            weekly={weekday: around_the_clock for weekday in range(7)},
            exceptions={day: (period("00:00", "03:15", "self_service"), period("03:45", "24:00", "self_service"))},
        )
        assert schedule.next_change(at(day, "00:30"), horizon_days=2) is None

    def test_the_day_has_23_hours(self, year):
        day = SPRING[year]
        schedule = Schedule(weekly={SUNDAY: (period("02:00", "05:00", "self_service"),)}, exceptions={})
        timeline = schedule.day_timeline(day)
        assert [(start.time(), end.time(), mode) for start, end, mode in timeline] == [
            (time(0), time(2), "closed"),
            (time(2), time(5), "self_service"),
            (time(5), time(0), "closed"),
        ]
        assert [real_hours(segment) for segment in timeline] == [2, 2, 19]


@pytest.mark.parametrize("year", sorted(AUTUMN))
class TestFallBack:
    """The last Sunday of October: at 04:00 the clocks go back to 03:00 (01:00 UTC)."""

    def test_a_boundary_in_the_repeated_hour_is_crossed_twice(self, year):
        day = AUTUMN[year]
        schedule = Schedule(weekly={SUNDAY: (period("03:30", "06:00", "self_service"),)}, exceptions={})
        assert changes(schedule, at(day, "01:00"), 4) == [
            (utc(day, "00:30"), "self_service"),  # 03:30 EEST
            (utc(day, "01:00"), "closed"),  # 04:00 EEST becomes 03:00 EET
            (utc(day, "01:30"), "self_service"),  # 03:30 EET
            (utc(day, "04:00"), "closed"),  # 06:00 EET
        ]

    def test_both_instants_of_a_repeated_wall_time_have_its_mode(self, year):
        day = AUTUMN[year]
        schedule = Schedule(weekly={SUNDAY: (period("03:30", "06:00", "self_service"),)}, exceptions={})
        assert [schedule.mode_at(at(day, "03:45", fold=fold)) for fold in (0, 1)] == ["self_service"] * 2
        assert [schedule.mode_at(at(day, "03:15", fold=fold)) for fold in (0, 1)] == ["closed"] * 2

    def test_a_boundary_at_the_end_of_the_repeated_hour_comes_only_once(self, year):
        # 04:00 EEST is never shown: the clocks go back just before it.
        day = AUTUMN[year]
        schedule = Schedule(
            weekly={SUNDAY: (period("00:00", "04:00", "staffed"), period("04:00", "24:00", "self_service"))},
            exceptions={},
        )
        assert schedule.next_change(at(day, "00:30")) == (utc(day, "02:00"), "self_service")

    def test_the_day_has_25_hours(self, year):
        day = AUTUMN[year]
        schedule = Schedule(weekly={SUNDAY: (period("02:00", "05:00", "self_service"),)}, exceptions={})
        timeline = schedule.day_timeline(day)
        assert [(start.time(), end.time(), mode) for start, end, mode in timeline] == [
            (time(0), time(2), "closed"),
            (time(2), time(5), "self_service"),
            (time(5), time(0), "closed"),
        ]
        assert [real_hours(segment) for segment in timeline] == [2, 4, 19]

    def test_the_timeline_shows_the_repeated_hour_with_real_instants(self, year):
        day = AUTUMN[year]
        schedule = Schedule(weekly={SUNDAY: (period("03:30", "06:00", "self_service"),)}, exceptions={})
        timeline = schedule.day_timeline(day)
        assert [(start.astimezone(UTC), mode) for start, _, mode in timeline] == [
            (utc(day - timedelta(days=1), "21:00"), "closed"),
            (utc(day, "00:30"), "self_service"),
            (utc(day, "01:00"), "closed"),
            (utc(day, "01:30"), "self_service"),
            (utc(day, "04:00"), "closed"),
        ]
        assert [(start.time(), start.fold) for start, _, _ in timeline] == [
            (time(0), 0),
            (time(3, 30), 0),
            (time(3), 1),
            (time(3, 30), 1),
            (time(6), 0),
        ]


class TestDayTimeline:
    def test_an_ordinary_day_from_midnight_to_midnight(self):
        assert ORDINARY.day_timeline(MONDAY) == [
            (at(MONDAY, "00:00"), at(MONDAY, "07:00"), "closed"),
            (at(MONDAY, "07:00"), at(MONDAY, "10:00"), "self_service"),
            (at(MONDAY, "10:00"), at(MONDAY, "12:00"), "closed"),
            (at(MONDAY, "12:00"), at(MONDAY, "16:00"), "staffed"),
            (at(MONDAY, "16:00"), at(MONDAY, "21:00"), "self_service"),
            (at(MONDAY, "21:00"), at(MONDAY + timedelta(days=1), "00:00"), "closed"),
        ]

    def test_adjacent_periods_of_one_mode_are_shown_as_one(self):
        schedule = Schedule(
            weekly={
                0: (
                    period("07:00", "10:00", "self_service"),
                    period("10:00", "12:00", "self_service"),
                    period("12:00", "13:00", "closed"),
                    period("18:00", "24:00", "staffed"),
                )
            },
            exceptions={},
        )
        assert [(start.time(), mode) for start, _, mode in schedule.day_timeline(MONDAY)] == [
            (time(0), "closed"),
            (time(7), "self_service"),
            (time(12), "closed"),
            (time(18), "staffed"),
        ]

    def test_a_closed_day_is_one_closed_segment(self):
        assert ORDINARY.day_timeline(MONDAY - timedelta(days=1)) == [
            (at(MONDAY - timedelta(days=1), "00:00"), at(MONDAY, "00:00"), "closed")
        ]

    def test_in_a_zone_whose_clocks_skip_midnight_the_day_starts_at_the_jump(self):
        # Cuba springs forward from 00:00 to 01:00 (05:00 UTC).
        havana = ZoneInfo("America/Havana")
        day = date(2026, 3, 8)
        schedule = Schedule(weekly={SUNDAY: (period("00:00", "02:00", "self_service"),)}, exceptions={}, tz=havana)
        timeline = schedule.day_timeline(day)
        assert [(start.astimezone(UTC), start.time(), mode) for start, _, mode in timeline] == [
            (utc(day, "05:00"), time(1), "self_service"),
            (utc(day, "06:00"), time(2), "closed"),
        ]
        assert sum(real_hours(segment) for segment in timeline) == 23
        assert schedule.next_change(utc(day, "04:30")) == (utc(day, "05:00"), "self_service")
