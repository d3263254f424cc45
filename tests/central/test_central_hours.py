"""Hours kept centrally, on each engine: set, imported from Kirkanta, shown, and taken by a branch through `omaovi sync`.

Every moment is relative to NOW, a Friday noon two days before the clocks go forward
in Helsinki.
"""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import func, select

from central import db, hours, schema
from device.cli import main
from device.config import load_with_central
from device.schedule import Period
from device.store import Store
from harness import BRANCH, RealCentral
from sync.central import HOURS_DAYS, SyncRunner
from tests.test_central_sync import write_config

HELSINKI = ZoneInfo("Europe/Helsinki")
NOW = datetime(2027, 3, 26, 12, 0, tzinfo=HELSINKI).astimezone(timezone.utc)
TODAY = NOW.astimezone(HELSINKI).date()
WEEKDAY = (Period(7 * 60, 10 * 60, "self_service"), Period(10 * 60, 20 * 60, "staffed"))


def at(days: int, hhmm: str) -> datetime:
    hour, minute = map(int, hhmm.split(":"))
    return datetime.combine(TODAY + timedelta(days=days), time(hour, minute), tzinfo=HELSINKI)


@pytest.fixture
def central(tmp_path, database_url):
    with RealCentral(tmp_path, database_url) as service:
        yield service


def schedule(central):
    with db.reading(central.engine) as connection:
        return hours.branch_schedule(connection, BRANCH)


# -- the functions --------------------------------------------------------------------
def test_a_weekly_pattern_and_a_dated_exception_make_the_branchs_schedule(central):
    with db.writing(central.engine) as connection:
        for weekday in range(5):
            hours.set_weekday(connection, BRANCH, weekday, WEEKDAY)
        hours.set_day(connection, BRANCH, TODAY + timedelta(days=3), [], note="Closed for training")
        hours.set_day(connection, BRANCH, TODAY + timedelta(days=4), [Period(600, 900, "staffed")])
    kept = schedule(central)
    assert kept.periods_on(TODAY) == WEEKDAY
    assert kept.periods_on(TODAY + timedelta(days=1)) == ()  # Saturday: not in the pattern, so closed
    assert kept.periods_on(TODAY + timedelta(days=3)) == ()
    assert kept.periods_on(TODAY + timedelta(days=4)) == (Period(600, 900, "staffed"),)

    with db.writing(central.engine) as connection:
        hours.set_weekday(connection, BRANCH, 0, [Period(600, 720, "staffed")])  # replaces Monday, not adds to it
        assert hours.clear_day(connection, BRANCH, TODAY + timedelta(days=4))
        assert not hours.clear_day(connection, BRANCH, TODAY + timedelta(days=4))
    kept = schedule(central)
    assert kept.periods_on(TODAY + timedelta(days=3)) == ()  # Monday, still its own
    assert kept.periods_on(TODAY + timedelta(days=10)) == (Period(600, 720, "staffed"),)  # the next Monday
    assert kept.periods_on(TODAY + timedelta(days=4)) == WEEKDAY  # Tuesday follows its weekday again


def test_a_branch_without_hours_kept_here_has_none(central):
    assert schedule(central) is None
    with db.reading(central.engine) as connection, pytest.raises(hours.HoursError, match="there is no branch 'nowhere'"):
        hours.branch_schedule(connection, "nowhere")


@pytest.mark.parametrize("periods, message", [
    ([Period(600, 720, "staffed"), Period(700, 800, "self_service")], "Monday: 10:00–12:00 overlaps 11:40–13:20"),
    ([Period(720, 600, "staffed")], "Monday: 12:00–10:00 ends before it starts"),
    ([Period(600, 720, "open")], "Monday: 10:00–12:00 mode 'open' is not one of staffed, self_service, closed"),
])
def test_hours_the_branch_would_refuse_are_refused_here_and_nothing_changes(central, periods, message):
    with db.writing(central.engine) as connection:
        hours.set_weekday(connection, BRANCH, 0, WEEKDAY)
    with db.writing(central.engine) as connection, pytest.raises(hours.HoursError, match=message):
        hours.set_weekday(connection, BRANCH, 0, periods)
    assert schedule(central).periods_on(TODAY + timedelta(days=3)) == WEEKDAY


def test_a_weekday_that_does_not_exist_is_named(central):
    with db.writing(central.engine) as connection, pytest.raises(hours.HoursError, match=r"weekday 7 is not one of 0 \(Monday\) … 6 \(Sunday\)"):
        hours.set_weekday(connection, BRANCH, 7, WEEKDAY)


@pytest.mark.parametrize("text, expected", [
    ("07:00-10:00 self_service, 10:00-20:00 staffed", WEEKDAY),
    ("10:00–20:00 staffed,07:00 - 10:00 self-service", WEEKDAY),
    ("18:00-24:00 self_service", (Period(1080, 1440, "self_service"),)),
    ("closed", ()),
])
def test_periods_are_read_as_staff_write_them(text, expected):
    assert hours.read_periods(text, "Monday") == expected


@pytest.mark.parametrize("text, message", [
    ("07:00 to 10:00 staffed", "Monday: '07:00 to 10:00 staffed' is not a period; write it as HH:MM-HH:MM MODE"),
    ("07:00-25:00 staffed", "Monday: '25:00' is not a time"),
    ("07:00-10:00 staffed, 09:00-11:00 staffed", "Monday: 07:00–10:00 overlaps 09:00–11:00"),
])
def test_periods_that_cannot_be_read_are_named(text, message):
    with pytest.raises(hours.HoursError, match=message):
        hours.read_periods(text, "Monday")


def kirkanta(*days: tuple[int, list]) -> dict:
    return {"items": [{"date": (TODAY + timedelta(days=offset)).isoformat(), "closed": not times, "times": times or None}
                      for offset, times in days]}


def test_a_kirkanta_import_gives_dated_hours_and_a_bad_one_changes_nothing(central):
    good = kirkanta((1, [{"from": "08:00", "to": "16:00", "status": 1}]), (2, []))
    with db.writing(central.engine) as connection:
        assert sorted(hours.import_kirkanta(connection, BRANCH, json.dumps(good))) == [TODAY + timedelta(days=1), TODAY + timedelta(days=2)]
    bad = kirkanta((1, [{"from": "09:00", "to": "12:00", "status": 2}]), (5, [{"from": "10:00", "to": "09:00", "status": 2}]))
    with db.writing(central.engine) as connection, pytest.raises(hours.HoursError, match=r"items\[1\] \(.*\)\.times\[0\]\.to: 09:00 is not after from 10:00"):
        hours.import_kirkanta(connection, BRANCH, json.dumps(bad))
    kept = schedule(central)
    assert kept.periods_on(TODAY + timedelta(days=1)) == (Period(480, 960, "staffed"),)
    assert kept.periods_on(TODAY + timedelta(days=2)) == ()
    assert TODAY + timedelta(days=5) not in kept.exceptions


# -- the console ------------------------------------------------------------------------
@pytest.fixture
def console(tmp_path, database_url):
    (tmp_path / "consortium.key").write_text("omaovi-test-vector-key-000000000")
    toml = tmp_path / "central.toml"
    toml.write_text(f'database = "{database_url}"\nconsortium_key_file = "consortium.key"\n')
    assert main(["central", "branch-add", "kallio", "--name", "Kallio", "-c", str(toml)]) == 0

    def run(*argv: str) -> int:
        try:
            return main(["central", *argv, "-c", str(toml)])
        except SystemExit as exit_:  # argparse refuses an option by exiting with 2
            return exit_.code

    return run


def test_staff_set_and_see_a_branchs_hours_from_the_console_in_local_time_across_the_clock_change(console, capsys):
    assert console("hours-set", "kallio", "--weekday", "mon-fri", "--periods", "07:00-10:00 self_service, 10:00-20:00 staffed") == 0
    assert console("hours-set", "kallio", "--weekday", "sun", "--periods", "00:00-24:00 self_service") == 0
    christmas_eve = (TODAY + timedelta(days=3)).isoformat()
    assert console("hours-set", "kallio", "--date", christmas_eve, "--periods", "closed", "--note", "Training day") == 0
    capsys.readouterr()

    assert console("hours-show", "kallio", "--date", TODAY.isoformat(), "--days", "4") == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown == [
        f"Friday {TODAY} (weekly pattern, Europe/Helsinki)",
        "  00:00–07:00  closed",
        "  07:00–10:00  self-service",
        "  10:00–20:00  staffed",
        "  20:00–24:00  closed",
        f"Saturday {TODAY + timedelta(days=1)} (weekly pattern, Europe/Helsinki)",
        "  00:00–24:00  closed",
        f"Sunday {TODAY + timedelta(days=2)} (weekly pattern, Europe/Helsinki)",
        "  00:00+02:00–24:00+03:00  self-service  [EET→EEST]",
        f"Monday {christmas_eve} (exception, Europe/Helsinki)",
        "  00:00–24:00  closed",
    ]


@pytest.mark.parametrize("argv, message", [
    (["--weekday", "mon", "--periods", "10:00-09:00 staffed"], "Monday: 10:00–09:00 ends before it starts"),
    (["--weekday", "fri-mon", "--periods", "closed"], "'fri-mon': a range runs from Monday towards Sunday"),
    (["--weekday", "maanantai", "--periods", "closed"], "name days as mon, tue, wed, thu, fri, sat, sun"),
    (["--date", "24.12.2027", "--periods", "closed"], "'24.12.2027' is not a date (YYYY-MM-DD)"),
    (["--weekday", "mon", "--clear"], "--clear and --note go with --date"),
    (["--weekday", "mon", "--periods", "closed", "--note", "Why"], "--clear and --note go with --date"),
    (["--date", "2027-12-24", "--periods", "closed", "--note", "x" * 201], "2027-12-24: a note must be at most 200 printable characters"),
])
def test_the_console_names_what_is_wrong_with_hours(console, capsys, argv, message):
    assert console("hours-set", "kallio", *argv) != 0
    assert message in capsys.readouterr().err


def test_hours_import_from_the_console_is_all_or_nothing(console, capsys, tmp_path):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(kirkanta((1, [{"from": "08:00", "to": "16:00", "status": 1}]), (2, []))))
    bad.write_text(json.dumps(kirkanta((3, [{"from": "08:00", "to": "16:00", "status": 7}]))))
    assert console("hours-import", "kallio", str(bad)) == 1
    assert f"{bad}: items[0] ({TODAY + timedelta(days=3)}).times[0].status: 7 is not one of" in capsys.readouterr().err
    assert console("hours-show", "kallio") == 0
    assert capsys.readouterr().out == "The central service keeps no hours for kallio: the branch keeps its own.\n"
    assert console("hours-show", "kallio", "--days", "100000") == 2
    assert "'100000': give a number of days from 1 to 400" in capsys.readouterr().err
    assert console("hours-import", "kallio", str(good)) == 0
    assert f"for 2 day(s), {TODAY + timedelta(days=1)} to {TODAY + timedelta(days=2)}" in capsys.readouterr().out
    assert console("hours-import", "nowhere", str(good)) == 1
    assert "there is no branch 'nowhere'" in capsys.readouterr().err


def test_booth_rules_are_set_from_the_console_and_the_desk_is_told_why_and_how_to_override(console, capsys):
    assert console("booth-add", "kallio", "booth-1", "--name", "Work booth", "--min-hours", "1.5", "--max-hours", "3",
                   "--within", "staffed", "--days-ahead", "7", "--max-bookings", "1", "--cancel-until-minutes", "120") == 0
    assert capsys.readouterr().out == (
        "Booth booth-1 (Work booth) of branch kallio can be booked: 1.5–3 h in slots of 30 min, within its staffed hours, "
        "up to 7 days ahead, 1 booking(s) per card at this branch, cancellable until 120 min before the start.\n")
    assert console("booth-add", "kallio", "booth-1", "--name", "Work booth", "--slot-minutes", "45") == 1
    assert "slot of 45 minutes: an hour must divide into whole slots" in capsys.readouterr().err
    assert console("booth-add", "kallio", "booth-1", "--name", "Work booth", "--max-hours", "two") == 2
    assert "'two' is not a length in hours" in capsys.readouterr().err

    far = (datetime.now(HELSINKI) + timedelta(days=30)).strftime("%Y-%m-%d 12:00")
    assert console("book", "kallio", "booth-1", "--card", "12345678", "--start", far, "--hours", "2") == 1
    error = capsys.readouterr().err
    assert "not booked: that day is further ahead than this booth can be booked (the desk may book it anyway with --override too_far_ahead)" in error
    assert "12345678" not in error
    assert console("book", "kallio", "booth-1", "--card", "12345678", "--start", far, "--hours", "2", "--override", "too_far_ahead") == 0
    assert "Set aside on the record: too_far_ahead." in capsys.readouterr().out
    assert console("book", "kallio", "booth-1", "--card", "12345678", "--start", far, "--hours", "2", "--override", "outside_hours") == 2


def test_a_desk_booking_on_the_night_the_clocks_go_forward_lasts_the_real_hours_asked_for(console, capsys):
    day = datetime.now(HELSINKI).date() + timedelta(days=1)
    while datetime.combine(day, time(0), tzinfo=HELSINKI).utcoffset() == datetime.combine(day, time(23), tzinfo=HELSINKI).utcoffset() \
            or datetime.combine(day, time(23), tzinfo=HELSINKI).dst() == timedelta(0):
        day += timedelta(days=1)  # the next Sunday when summer time begins
    assert console("booth-add", "kallio", "booth-1", "--name", "Work booth") == 0
    assert console("book", "kallio", "booth-1", "--card", "12345678", "--start", f"{day} 01:00", "--hours", "3",
                   "--override", "too_far_ahead") == 0
    assert f"{day:%d.%m.%Y} 01.00–05.00: reference" in capsys.readouterr().out


# -- through `omaovi sync` ----------------------------------------------------------------
def managed_branch(central, tmp_path) -> tuple[Store, SyncRunner]:
    """Branch kallio with its own hours self-service all day, syncing its hours from ``central`` at NOW."""
    (tmp_path / "branch").mkdir()
    path = write_config(tmp_path / "branch", central.url, token=central.token, central_extra="hours_managed_centrally = true\n")
    config, central_config = load_with_central(path)
    store = Store(config.database)
    store.set_weekly({day: (Period(0, 1440, "self_service"),) for day in range(7)})
    session = requests.Session()
    session.trust_env = False
    return store, SyncRunner(store, config, central_config, session=session, clock=lambda: NOW, sleep=lambda _seconds: None)


def test_a_managed_branch_whose_hours_are_not_kept_centrally_keeps_its_own_and_says_so(central, tmp_path):
    store, runner = managed_branch(central, tmp_path)
    error = runner.run_once()["hours"]
    assert error.startswith("HTTP 404 from GET") and "hours are not kept by the central service" in error
    assert store.schedule(HELSINKI).mode_at(at(0, "21:00")) == "self_service"
    assert store.exception_days() == []


def test_a_branch_whose_hours_the_consortium_manages_takes_them_through_sync_and_its_door_follows(central, tmp_path):
    with db.writing(central.engine) as connection:
        for weekday in range(7):
            hours.set_weekday(connection, BRANCH, weekday, WEEKDAY)
        hours.set_day(connection, BRANCH, TODAY + timedelta(days=3), [], note="Training day")
    store, runner = managed_branch(central, tmp_path)

    assert runner.run_once()["hours"] is None
    door = store.schedule(HELSINKI)
    assert door.mode_at(at(0, "13:00")) == "staffed"
    assert door.mode_at(at(0, "21:00")) == "closed"  # was self-service by the branch's own pattern
    assert door.mode_at(at(2, "06:30")) == "closed"  # Sunday, after the clocks went forward
    assert door.mode_at(at(2, "07:00")) == "self_service"
    assert door.mode_at(at(3, "13:00")) == "closed"  # the training day
    assert door.mode_at(at(HOURS_DAYS + 1, "21:00")) == "self_service"  # beyond what sync fetches: the branch's own pattern

    with db.writing(central.engine) as connection:
        hours.set_day(connection, BRANCH, TODAY + timedelta(days=1), [Period(12 * 60, 14 * 60, "staffed")])
        hours.clear_day(connection, BRANCH, TODAY + timedelta(days=3))
    assert runner.run_once()["hours"] is None
    door = store.schedule(HELSINKI)
    assert (door.mode_at(at(1, "08:00")), door.mode_at(at(1, "12:30"))) == ("closed", "staffed")
    assert door.mode_at(at(3, "13:00")) == "staffed"
    with db.reading(central.engine) as connection:
        assert connection.execute(select(func.count()).select_from(schema.hours_exceptions)).scalar_one() == 1
