"""Properties of next_change and day_timeline, checked against mode_at by brute force.

mode_at is simple enough to trust on its own (and is table-tested in
test_schedule.py); next_change and day_timeline are where the daylight-saving
arithmetic lives, so they are checked minute by minute against it. Schedules are
random, with boundaries and instants bunched around midnights and the 2026/2027
daylight-saving nights, where mistakes hide.

Example counts are moderate so that the file runs in seconds on CI's two cores.
HYPOTHESIS_PROFILE=long runs many more; any other profile name is looked up with
``settings.get_profile``, so one registered in conftest.py is honoured.
"""

import os
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from device.schedule import MODES, Period, Schedule

HELSINKI = ZoneInfo("Europe/Helsinki")
UTC = timezone.utc
MINUTE = timedelta(minutes=1)


def _settings() -> settings:
    profile = os.environ.get("HYPOTHESIS_PROFILE")
    if profile is None:
        return settings(max_examples=100, deadline=None)
    if profile == "long":
        return settings(max_examples=2000, deadline=None)
    return settings(settings.get_profile(profile), deadline=None)


SETTINGS = _settings()

DST_DAYS = {date(2026, 3, 29): 23, date(2026, 10, 25): 25, date(2027, 3, 28): 23, date(2027, 10, 31): 25}
#: The daylight-saving days with their neighbours, an ordinary summer day, and New
#: Year (the zone's transitions are looked up per year).
DAYS = sorted(
    {day + timedelta(days=shift) for day in DST_DAYS for shift in (-1, 0, 1)}
    | {date(2026, 6, 15), date(2026, 12, 31), date(2027, 1, 1)}
)
#: 00:00, the clock jumps (02:00-05:00) and the minutes just around them.
NEAR_JUMPS = [0, 1, 59, 60, 120, 179, 180, 181, 195, 210, 225, 239, 240, 241, 270, 300, 1380, 1439, 1440]

minutes_of_day = st.one_of(st.sampled_from(NEAR_JUMPS), st.integers(0, 1440))


@st.composite
def day_periods(draw) -> tuple[Period, ...]:
    """A valid day: cut at random minutes, each piece a mode or a gap."""
    cuts = sorted(draw(st.sets(minutes_of_day, min_size=2, max_size=8)))
    periods = []
    for start, end in zip(cuts, cuts[1:]):
        mode = draw(st.sampled_from(MODES + (None,)))
        if mode is not None:
            periods.append(Period(start, end, mode))
    return tuple(periods)


schedules = st.builds(
    Schedule,
    weekly=st.lists(day_periods(), min_size=7, max_size=7).map(lambda days: dict(enumerate(days))),
    exceptions=st.dictionaries(st.sampled_from(DAYS), day_periods(), max_size=6),
)


@st.composite
def nearly_constant_schedules(draw) -> Schedule:
    """One mode around the clock, with short changes of mode mostly inside the hours the
    clocks jump, so next_change often has nothing to report (or must find the one
    change the clocks do not skip)."""
    mode = draw(st.sampled_from(MODES))
    all_day = (Period(0, 1440, mode),)
    exceptions = {}
    for day in draw(st.sets(st.sampled_from(DAYS), min_size=len(DAYS) // 2)):
        start = draw(st.integers(120, 299))
        end = draw(st.integers(start + 1, 300))
        other = draw(st.sampled_from(MODES))
        exceptions[day] = (Period(0, start, mode), Period(start, end, other), Period(end, 1440, mode))
    return Schedule(weekly={weekday: all_day for weekday in range(7)}, exceptions=exceptions)


@st.composite
def instants(draw) -> datetime:
    """Instants near the midnights and clock jumps of DAYS, written in one of several zones."""
    day = draw(st.sampled_from(DAYS))
    base = datetime.combine(day, time(), tzinfo=UTC)
    offset = draw(
        st.one_of(
            st.integers(-4 * 60, 28 * 60).map(lambda minutes: timedelta(minutes=minutes)),
            st.integers(-4 * 3600, 28 * 3600).map(lambda seconds: timedelta(seconds=seconds)),
        )
    )
    nudge = draw(st.sampled_from([timedelta(0), timedelta(microseconds=1), -timedelta(microseconds=1)]))
    zone = draw(st.sampled_from([UTC, HELSINKI, timezone(timedelta(hours=-5))]))
    return (base + offset + nudge).astimezone(zone)


def check_next_change(schedule: Schedule, start: datetime, horizon_days: int) -> None:
    change = schedule.next_change(start, horizon_days=horizon_days)
    mode = schedule.mode_at(start)
    # Step in UTC: adding to a Helsinki datetime would step through wall time.
    start = start.astimezone(UTC)
    until = start + timedelta(days=horizon_days)
    if change is None:
        probe = start
        while probe < until:
            assert schedule.mode_at(probe) == mode, f"the mode changes at {probe} but next_change found nothing"
            probe += MINUTE
        return

    instant, new_mode = change
    assert instant.utcoffset() == timedelta(0)
    assert start < instant <= until
    assert new_mode != mode
    assert schedule.mode_at(instant) == new_mode
    # The mode only changes at whole minutes, so a probe every minute from `start`
    # lands in every stretch of a different mode that begins before `instant`.
    probe = start
    while probe < instant:
        assert schedule.mode_at(probe) == mode, f"the mode already changes at {probe}, before {instant}"
        probe += MINUTE
    for just_before in (instant - timedelta(seconds=1), instant - timedelta(microseconds=1)):
        if just_before > start:
            assert schedule.mode_at(just_before) == mode


@SETTINGS
@given(schedule=schedules, start=instants(), horizon_days=st.integers(1, 3))
def test_next_change_is_the_first_change(schedule, start, horizon_days):
    check_next_change(schedule, start, horizon_days)


@SETTINGS
@given(schedule=nearly_constant_schedules(), start=instants(), horizon_days=st.integers(1, 3))
def test_no_change_means_the_mode_holds_through_the_horizon(schedule, start, horizon_days):
    check_next_change(schedule, start, horizon_days)


@SETTINGS
@given(schedule=schedules, day=st.sampled_from(DAYS))
def test_day_timeline_covers_the_real_day(schedule, day):
    timeline = schedule.day_timeline(day)
    in_utc = [(start.astimezone(UTC), end.astimezone(UTC), mode) for start, end, mode in timeline]

    first_start, last_end = timeline[0][0], timeline[-1][1]
    assert (first_start.date(), first_start.time()) == (day, time(0))
    assert (last_end.date(), last_end.time()) == (day + timedelta(days=1), time(0))
    assert in_utc[-1][1] - in_utc[0][0] == timedelta(hours=DST_DAYS.get(day, 24))

    for (_, end, mode), (start, _, next_mode) in zip(in_utc, in_utc[1:]):
        assert end == start, "segments must follow each other without gap or overlap"
        assert mode != next_mode, "segments of one mode must be merged"

    for (local_start, local_end, _), (start, end, mode) in zip(timeline, in_utc):
        assert start < end
        # Local datetimes must name the real instant: the fold matters in the repeated hour.
        for local, real in ((local_start, start), (local_end, end)):
            assert local.tzinfo is schedule.tz
            back = real.astimezone(schedule.tz)
            assert (local.replace(tzinfo=None), local.fold) == (back.replace(tzinfo=None), back.fold)
        assert schedule.mode_at(start) == mode
        assert schedule.mode_at(end - timedelta(seconds=1)) == mode
        assert schedule.mode_at(end - timedelta(microseconds=1)) == mode
        probe = start
        while probe < end:
            assert schedule.mode_at(probe) == mode
            probe += MINUTE
