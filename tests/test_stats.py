"""device.stats: periods in local time across DST, booth hours and open hours."""

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from device.events import Event
from device.schedule import Period
from device.stats import FIELDS, summarize
from device.store import Store

HEL = ZoneInfo("Europe/Helsinki")


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "omaovi.db")
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
