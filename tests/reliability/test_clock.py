"""The wall clock jumps: NTP steps of two hours, and the daylight-saving nights of 2026 and 2027.

A Pi has no real-time clock unless one is fitted; it starts from the last saved
time and NTP steps it later. The doors must follow the hours at the time the clock
says *now*, never let a card in on an answer whose age it cannot know, and count
each tap in exactly one hour, however the clock moved between taps.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from branch_rig import ALLOWED, KEY, STAFF, Branch, Seconds

from device.cards import card_key
from device.config import DoorConfig, PolicyConfig
from device.events import hour_text, parse_utc
from device.policy import Patron, Reason, decide
from device.schedule import Period, Schedule
from device.stats import summarize

HELSINKI = ZoneInfo("Europe/Helsinki")
UTC = timezone.utc
#: Self-service 08:00-20:00 every day, closed otherwise.
DAYTIME = {day: (Period(8 * 60, 20 * 60, "self_service"),) for day in range(7)}


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), HELSINKI).astimezone(UTC)


@pytest.fixture
def branch(tmp_path):
    made = []

    def build(start: datetime, **kwargs) -> Branch:
        made.append(Branch(tmp_path, start, **kwargs))
        return made[-1]

    yield build
    for b in made:
        b.close()


# --- a cache entry fetched "in the future" --------------------------------------

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)


@pytest.mark.parametrize(
    "fetched, staff, expected",
    [
        (NOW - HOUR, False, Reason.GRANTED),
        (NOW - 71 * HOUR, False, Reason.GRANTED),
        (NOW - 73 * HOUR, False, Reason.UNAVAILABLE),  # older than max_offline_age
        (NOW + 4 * MINUTE, False, Reason.GRANTED),  # clock skew between the device and the central service
        (NOW + 5 * MINUTE, False, Reason.GRANTED),
        (NOW + 6 * MINUTE, False, Reason.UNAVAILABLE),  # the device's clock went back: age unknown
        (NOW + 2 * HOUR, False, Reason.UNAVAILABLE),
        (NOW + 30 * 24 * HOUR, False, Reason.UNAVAILABLE),  # a Pi booted with last month's saved time
        (NOW + 2 * HOUR, True, Reason.UNAVAILABLE),  # a cached staff flag of unknown age opens nothing either
        (NOW + 4 * MINUTE, True, Reason.STAFF),
    ],
)
def test_a_cache_entry_fetched_more_than_5_minutes_in_the_future_is_not_fresh(fetched, staff, expected):
    patron = Patron(card_key="k", self_service=True, age_ok_from=date(2000, 1, 1), staff=staff, fetched_at=fetched)
    door = DoorConfig(id="entrance", kind="entrance", lock_pin=17)
    hours = Schedule(weekly={day: (Period(0, 1440, "self_service"),) for day in range(7)}, exceptions={})
    decision = decide("k", door, NOW, hours, patron, [], PolicyConfig(max_offline_age=timedelta(hours=72)))
    assert decision.reason is expected


# --- NTP steps while the controller runs ------------------------------------------


def assert_counts_match_the_log(b: Branch) -> None:
    """Every tap counted once, in the UTC hour of the time the device stamped on it."""
    taps = Counter(hour_text(parse_utc(e["ts"])) for e in b.events(type="tap"))
    assert b.hourly() == dict(taps)


def test_ntp_steps_of_two_hours_decide_each_tap_by_the_hours_at_the_new_time(branch):
    day = date(2026, 11, 25)
    b = branch(local(day, 19, 0), weekly=DAYTIME)
    seen = []
    for step in (0, +2, -2, -12, +2, +10):
        b.wall.step(timedelta(hours=step))
        seen.append((b.wall.now.astimezone(HELSINKI).strftime("%H:%M"), b.tap(ALLOWED).decision.reason))
    # 07:00 and 09:00 are before the 19:00 the card was last confirmed: more than
    # 5 minutes "in the future", so the card is not trusted then; the hours decide first.
    assert seen == [
        ("19:00", Reason.GRANTED), ("21:00", Reason.CLOSED), ("19:00", Reason.GRANTED),
        ("07:00", Reason.CLOSED), ("09:00", Reason.UNAVAILABLE), ("19:00", Reason.GRANTED),
    ]
    assert not b.events(type="tap", reason="unavailable", mode="closed")
    assert_counts_match_the_log(b)
    assert sum(b.hourly("visit_").values()) == 3


def test_after_the_clock_steps_back_staff_still_open_and_a_central_sync_round_restores_patrons(branch):
    start = local(date(2026, 11, 25), 12, 0)
    b = branch(start, weekly=DAYTIME)
    b.store.put_patrons([Patron(card_key=card_key(KEY, ALLOWED), self_service=True, age_ok_from=date(2000, 1, 1),
                                fetched_at=start)], source="central")
    b.store.note_sync_success("patrons", start)
    assert b.tap(ALLOWED).decision.granted

    b.wall.step(timedelta(hours=-2))
    assert b.tap(ALLOWED).decision.reason is Reason.UNAVAILABLE
    assert b.tap(STAFF).decision.reason is Reason.STAFF and b.relay_on

    b.store.note_sync_success("patrons", b.wall.now)  # the next round, at the corrected time, changed nothing
    assert b.tap(ALLOWED).decision.reason is Reason.GRANTED


def test_a_door_held_open_for_staffed_hours_follows_the_clock_step(branch):
    day = date(2026, 11, 25)
    staffed = {d: (Period(8 * 60, 20 * 60, "staffed"),) for d in range(7)}
    b = branch(local(day, 7, 0), weekly=staffed, staffed_entrance="unlocked")
    states = []
    for step in (0, +2, -2, +14):
        b.wall.step(timedelta(hours=step))
        b.tick()
        states.append(b.relay_on)
    assert states == [False, True, False, False]  # 07:00, 09:00, 07:00, 21:00


@pytest.mark.parametrize("step_hours", [+2, -2])
def test_a_clock_step_during_an_unlock_neither_shortens_nor_stretches_it(branch, step_hours):
    """The unlock runs on the monotonic clock: a door must not stand unlocked for two hours."""
    seconds = Seconds()
    b = branch(local(date(2026, 11, 25), 12, 0), weekly=DAYTIME, clock=seconds)
    assert b.tap(ALLOWED).decision.granted and b.relay_on
    b.wall.step(timedelta(hours=step_hours))
    seconds.advance(4.9)
    b.tick()
    assert b.relay_on
    seconds.advance(0.2)
    b.tick()
    assert not b.relay_on


# --- daylight-saving nights -------------------------------------------------------

DST_NIGHTS = [date(2026, 3, 29), date(2026, 10, 25), date(2027, 3, 28), date(2027, 10, 31)]


@pytest.mark.parametrize("night", DST_NIGHTS, ids=str)
def test_daylight_saving_night_decides_by_local_time_and_counts_each_hour_once(branch, night):
    """Self-service 01:00-03:30 local on the night the clocks change; a tap every 10 minutes."""
    b = branch(local(night, 0, 0), weekly={}, exceptions={night: (Period(60, 210, "self_service"),)})
    start = b.wall.now
    expected_grants = []
    while b.wall.now < start + timedelta(hours=6):
        wall_clock = b.wall.now.astimezone(HELSINKI).time()
        expected_grants.append(time(1, 0) <= wall_clock < time(3, 30))
        b.tick()
        assert b.tap(ALLOWED).decision.granted is expected_grants[-1], b.wall.now
        b.wall.step(timedelta(minutes=10))

    spring = night.month == 3
    # 01:00-03:30 lasts 2 h in spring (03:00-03:30 does not exist) and 3 h in autumn (03:00-03:30 twice).
    assert sum(expected_grants) == (12 if spring else 18)
    assert set(b.hourly().values()) == {6}, "six taps in each real hour"
    assert_counts_match_the_log(b)

    hours = summarize(b.store, HELSINKI, night, night, by="hour")
    assert len(hours) == (23 if spring else 25)
    assert sum(h["visits_self_service"] + h["denied"] for h in hours) == len(expected_grants)
    (whole_day,) = summarize(b.store, HELSINKI, night, night, by="day")
    assert whole_day["visits_self_service"] == sum(expected_grants)
    assert whole_day["denied"] == len(expected_grants) - sum(expected_grants)
