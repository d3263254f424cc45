"""device.stats: periods in local time across DST, booth hours and open hours."""

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from device.events import Event
from device.schedule import Period
from device.stats import FIELDS, summarize
from device.store import Store
from tests.branch_history import installed_at

HEL = ZoneInfo("Europe/Helsinki")


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "omaovi.db")
    installed_at(s, datetime(2026, 1, 1, tzinfo=HEL))
    # Every day: staffed 10-16, self-service 16-21, and self-service 00:00-06:00
    # so that the autumn night's repeated hour (25-hour day) is open.
    s.set_weekly({d: (Period(0, 360, "self_service"), Period(600, 960, "staffed"), Period(960, 1260, "self_service"))
                  for d in range(7)})
    yield s
    s.close()


def visit(local: datetime, mode="self_service") -> Event:
    return Event(ts=local.astimezone(timezone.utc), door="entrance", type="tap", reason="granted", mode=mode)


def test_open_hours_follow_the_wall_clock_across_the_dst_change(store):
    rows = {r["period"]: r for r in summarize(store, HEL, date(2026, 10, 24), date(2026, 10, 26))}
    assert rows["2026-10-24"]["self_service_open_hours"] == 11
    assert rows["2026-10-25"]["self_service_open_hours"] == 12  # 00:00-06:00 lasts 7 hours that night
    assert rows["2026-10-25"]["staffed_open_hours"] == 6
    spring = summarize(store, HEL, date(2026, 3, 29), date(2026, 3, 29))[0]
    assert spring["self_service_open_hours"] == 10


def test_weeks_and_months_are_local_and_cut_at_the_range(store):
    # Sunday 25 October 00:30 local is still Saturday in UTC; Monday 26 October starts W44.
    store.record([visit(datetime(2026, 10, 25, 0, 30, tzinfo=HEL)), visit(datetime(2026, 10, 26, 0, 30, tzinfo=HEL), "staffed"),
                  visit(datetime(2026, 11, 1, 0, 30, tzinfo=HEL))])
    weeks = summarize(store, HEL, date(2026, 10, 24), date(2026, 11, 1), "week")
    assert [(r["period"], r["visits_self_service"], r["visits_staffed"]) for r in weeks] == [
        ("2026-W43", 1, 0), ("2026-W44", 1, 1)]
    assert weeks[0]["self_service_open_hours"] == 11 + 12  # Saturday and the 25-hour Sunday
    months = summarize(store, HEL, date(2026, 10, 31), date(2026, 11, 1), "month")
    assert [(r["period"], r["visits_self_service"]) for r in months] == [("2026-10", 0), ("2026-11", 1)]


def test_hours_split_open_time_per_hour(store):
    rows = summarize(store, HEL, date(2026, 11, 25), date(2026, 11, 25), "hour")
    assert len(rows) == 24 and set(FIELDS) <= set(rows[0])
    assert [r["staffed_open_hours"] for r in rows[9:11]] == [0, 1]
    assert rows[21]["self_service_open_hours"] == 0 and rows[20]["self_service_open_hours"] == 1


def test_booth_hours_come_from_the_minutes_counter(store):
    tap = Event(ts=datetime(2026, 11, 25, 12, tzinfo=timezone.utc), door="booth", type="tap", reason="granted",
                mode="staffed", door_kind="booth", detail={"reservation": "r1", "booth_minutes": 90})
    store.record([tap])
    row = summarize(store, HEL, date(2026, 11, 25), date(2026, 11, 25))[0]
    assert (row["booth_uses"], row["booth_hours"]) == (1, 1.5)
    assert "booth_minutes" not in row


# -- the hours in force, the branch's first day, and time still to come ---------------

TODAY = date(2026, 12, 10)  # the test's own today; nothing here reads the real clock
NOON = datetime(2026, 12, 10, 12, 0, tzinfo=HEL)
#: Self-service 8-20 every day: 12 hours.
LONG = {d: (Period(480, 1200, "self_service"),) for d in range(7)}
#: Self-service 16-19 on weekdays only.
SHORT = {d: (Period(960, 1140, "self_service"),) for d in range(5)}


def november(store) -> dict:
    return summarize(store, HEL, date(2026, 11, 1), date(2026, 11, 30), "month", now=NOON)[0]


@pytest.fixture
def branch(tmp_path):
    s = Store(tmp_path / "history.db")
    installed_at(s, datetime(2026, 9, 1, tzinfo=HEL))
    s.set_weekly(LONG, at=datetime(2026, 9, 1, 9, 0, tzinfo=HEL))
    yield s
    s.close()


def test_editing_the_weekly_hours_leaves_last_months_open_hours_as_they_were(branch):
    assert november(branch)["self_service_open_hours"] == 30 * 12
    branch.set_weekly(SHORT, at=NOON)
    assert november(branch)["self_service_open_hours"] == 30 * 12, "November had the hours in force then"
    # From the day of the change on, the new hours count: Thursday 10 and Friday 11 December, 3 hours each.
    after = summarize(branch, HEL, TODAY, date(2026, 12, 13), now=datetime(2026, 12, 14, tzinfo=HEL))
    assert [row["self_service_open_hours"] for row in after] == [3, 3, 0, 0]
    assert branch.schedule(HEL).weekly == SHORT, "the doors follow the new hours"


def test_saving_the_same_hours_again_keeps_one_version(branch):
    branch.set_weekly(LONG, at=NOON)
    branch.set_weekly(SHORT, at=NOON + timedelta(hours=1))
    branch.set_weekly(SHORT, at=NOON + timedelta(hours=2))
    history = branch.hours_history(HEL)
    assert [day for day, _schedule in history.versions] == [date(2026, 9, 1), TODAY]
    assert history.on(TODAY).weekly == SHORT


def test_days_before_the_branchs_first_day_count_no_open_hours(branch):
    installed_at(branch, datetime(2026, 11, 21, 15, 0, tzinfo=HEL))
    assert november(branch)["self_service_open_hours"] == 10 * 12, "21 to 30 November"
    # A counter older than the database (restored, imported) moves the first day back.
    branch.record([visit(datetime(2026, 11, 11, 12, 0, tzinfo=HEL))])
    assert november(branch)["self_service_open_hours"] == 20 * 12


def test_the_rest_of_the_current_period_is_planned_not_open(branch):
    [december] = summarize(branch, HEL, date(2026, 12, 1), date(2026, 12, 31), "month", now=NOON)
    assert december["self_service_open_hours"] == 9 * 12 + 4, "1 to 9 December, and 8-12 today"
    assert december["self_service_open_hours_planned"] == 8 + 21 * 12, "12-20 today, and 11 to 31 December"
    assert november(branch)["self_service_open_hours_planned"] == 0


def test_pin_lockouts_are_counted(store):
    lockout = Event(ts=datetime(2026, 11, 25, 12, tzinfo=timezone.utc), door="entrance", type="pin_lockout")
    store.record([lockout, replace(lockout, uuid="second")])
    assert summarize(store, HEL, date(2026, 11, 25), date(2026, 11, 25))[0]["pin_lockouts"] == 2


def test_physical_visits_are_taps_less_repeats_plus_people_counted(store):
    at = datetime(2026, 11, 25, 12, tzinfo=HEL)
    store.record([visit(at), replace(visit(at), not_a_visit=True), visit(at, "staffed")])
    store.add_count(at, "side", "people_in", 4)
    row = summarize(store, HEL, date(2026, 11, 25), date(2026, 11, 25))[0]
    assert (row["granted_taps"], row["physical_visits"]) == (3, 2 + 4)


def test_hours_set_twice_on_the_first_day_keep_the_first_for_the_days_before(tmp_path):
    s = Store(tmp_path / "new.db")
    s.set_weekly(LONG, at=NOON)
    s.set_weekly(SHORT, at=NOON + timedelta(minutes=5))
    history = s.hours_history(HEL)
    assert history.on(TODAY - timedelta(days=1)).weekly == LONG and history.on(TODAY).weekly == SHORT
    s.close()


def test_a_branch_upgraded_keeps_its_stored_hours_for_the_past_and_its_counters_first_day(tmp_path):
    """A database from before the hours history: its weekly pattern is the one in force until the next edit,
    and its earliest counter (older than the upgrade) is the branch's first day."""
    import sqlite3

    from device.store import MIGRATIONS, _statements

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    before_history = next(number for number, script in enumerate(MIGRATIONS) if "weekly_history" in script)
    for number, script in enumerate(MIGRATIONS[:before_history], start=1):
        for statement in _statements(script):
            old.execute(statement)
        old.execute(f"PRAGMA user_version = {number}")
    old.executemany("INSERT INTO weekly_periods (weekday, start, end, mode) VALUES (?, 480, 1200, 'self_service')",
                    [(d,) for d in range(7)])
    old.execute("INSERT INTO hourly_counts VALUES ('2026-11-03T10:00Z', 'entrance', 'visit_self_service', 1)")
    old.commit()
    old.close()
    upgraded = Store(path)
    upgraded.set_weekly(SHORT, at=NOON)
    assert november(upgraded)["self_service_open_hours"] == 28 * 12, "3 to 30 November, by the hours stored then"
    upgraded.close()
