"""The omaovi command's tools, as a librarian or IT person runs them."""

import csv
import io
import json
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from device.cli import main
from device.events import Event
from device.store import Store

CONFIG = """\
branch = "testbranch"
database = "omaovi.db"
consortium_key_file = "consortium.key"

[[doors]]
id = "entrance"
kind = "entrance"
lock_pin = 17

[[doors]]
id = "booth"
kind = "booth"
resource = "smartblock-1"
lock_pin = 5
"""


@pytest.fixture
def branch(tmp_path):
    (tmp_path / "omaovi.toml").write_text(CONFIG)
    (tmp_path / "consortium.key").write_text("k" * 32)
    return tmp_path


def run(branch, capsys, *args):
    code = main([*args, "--config", str(branch / "omaovi.toml")])
    out, err = capsys.readouterr()
    return code, out, err


def test_patrons_import_hashes_numbers_and_reports_count(branch, capsys):
    (branch / "patrons.csv").write_text(
        "card_number,self_service,valid_until,age_ok_from\n"
        "12345678,1,2027-05-31,2000-01-01\n"
        "87654321,0,2027-05-31,2000-01-01\n"
    )
    code, out, _ = run(branch, capsys, "patrons", "import", str(branch / "patrons.csv"))
    assert code == 0 and "Imported 2 patron(s)" in out
    code, key, _ = run(branch, capsys, "card-key", "12345678")
    store = Store(branch / "omaovi.db")
    patron = store.patron(key.strip())
    assert patron.self_service and patron.valid_until == date(2027, 5, 31)
    dump = "\n".join(store.conn.iterdump())
    assert "12345678" not in dump and "87654321" not in dump


def test_patrons_import_warns_that_patrons_without_an_age_are_refused(branch, capsys):
    (branch / "patrons.csv").write_text("card_number,self_service\n12345678,1\n87654321,1\n")
    code, out, err = run(branch, capsys, "patrons", "import", str(branch / "patrons.csv"))
    assert code == 0 and "Imported 2 patron(s)" in out
    assert "2 patron(s) have no age_ok_from" in err


def test_a_missing_input_file_is_named_plainly(branch, capsys):
    code, _, err = run(branch, capsys, "patrons", "import", str(branch / "missing.csv"))
    assert code == 1 and err.strip() == f"omaovi patrons: {branch / 'missing.csv'}: file not found"


def test_patrons_import_refuses_a_bad_file_whole(branch, capsys):
    (branch / "patrons.csv").write_text("card_number,valid_until\n111,2027-01-01\n222,31.12.2027\n")
    code, _, err = run(branch, capsys, "patrons", "import", str(branch / "patrons.csv"))
    assert code == 1
    assert "line 3, valid_until: '31.12.2027' is not a date (YYYY-MM-DD)" in err
    assert "Nothing was imported." in err
    assert Store(branch / "omaovi.db").conn.execute("SELECT count(*) FROM patrons").fetchone()[0] == 0


def test_patrons_import_will_not_replace_the_cache_with_nothing(branch, capsys):
    (branch / "patrons.csv").write_text("card_number\n12345678\n")
    run(branch, capsys, "patrons", "import", str(branch / "patrons.csv"))
    (branch / "empty.csv").write_text("card_number,self_service\n")
    code, _, err = run(branch, capsys, "patrons", "import", "--replace", str(branch / "empty.csv"))
    assert code == 1 and "would empty the whole cache" in err
    assert Store(branch / "omaovi.db").conn.execute("SELECT count(*) FROM patrons").fetchone()[0] == 1


KIRKANTA = {
    "items": [
        {"date": "2026-12-24", "closed": False, "times": [{"from": "07:00", "to": "10:00", "status": 2}, {"from": "10:00", "to": "13:00", "status": 1}]},
        {"date": "2026-12-25", "closed": True, "times": [], "info": {"fi": "Joulupäivä", "sv": "Juldagen"}},
    ]
}


def test_hours_import_then_show(branch, capsys):
    (branch / "hours.json").write_text(json.dumps(KIRKANTA))
    code, out, _ = run(branch, capsys, "hours", "import", str(branch / "hours.json"))
    assert code == 0 and "2 day(s), 2026-12-24 to 2026-12-25" in out
    code, out, _ = run(branch, capsys, "hours", "show", "--date", "2026-12-24", "--days", "2")
    assert code == 0
    lines = [line.strip() for line in out.splitlines()]
    assert "Thursday 2026-12-24 (exception: Kirkanta, Europe/Helsinki)" in lines
    assert "Friday 2026-12-25 (exception: Joulupäivä, Europe/Helsinki)" in lines  # Kirkanta's name for the day
    assert "00:00–07:00  closed" in lines
    assert "07:00–10:00  self-service" in lines
    assert "10:00–13:00  staffed" in lines
    assert "13:00–24:00  closed" in lines
    assert "00:00–24:00  closed" in lines  # Christmas Day


def test_hours_show_marks_the_dst_change(branch, capsys):
    (branch / "hours.json").write_text(json.dumps({"items": [
        {"date": "2026-10-25", "closed": False, "times": [{"from": "02:00", "to": "06:00", "status": 2}]}]}))
    run(branch, capsys, "hours", "import", str(branch / "hours.json"))
    code, out, _ = run(branch, capsys, "hours", "show", "--date", "2026-10-25")
    # With the offsets, a stretch across the change does not read as a backwards range.
    assert "02:00+03:00–06:00+02:00  self-service  [EEST→EET]" in out
    assert "00:00+03:00–02:00+03:00" not in out and "00:00–02:00  closed" in out


def test_hours_import_refuses_a_bad_file(branch, capsys):
    (branch / "hours.json").write_text('{"items": [{"date": "2026-12-24", "closed": false, "times": [{"from": "07:00", "to": "10:00", "status": 7}]}]}')
    code, _, err = run(branch, capsys, "hours", "import", str(branch / "hours.json"))
    assert code == 1
    assert "status" in err and "7" in err and "Nothing was imported." in err


def _seed_events(branch):
    store = Store(branch / "omaovi.db")
    base = datetime(2026, 10, 24, 21, 30, tzinfo=timezone.utc)  # 00:30 local on the DST Sunday
    evs = [
        Event(ts=base, door="entrance", type="tap", reason="granted", mode="self_service", card_key="a" * 64),
        Event(ts=base + timedelta(hours=1), door="entrance", type="tap", reason="granted", mode="self_service", card_key="a" * 64),
        Event(ts=base + timedelta(hours=12), door="entrance", type="tap", reason="granted", mode="staffed", card_key="b" * 64),
        Event(ts=base + timedelta(hours=12), door="entrance", type="tap", reason="underage", mode="self_service", card_key="c" * 64),
        Event(ts=base + timedelta(hours=13), door="booth", type="tap", reason="granted", mode="staffed", card_key="d" * 64, door_kind="booth"),
    ]
    store.record(evs)
    return evs


def test_stats_by_day_across_the_dst_change(branch, capsys):
    _seed_events(branch)
    code, out, _ = run(branch, capsys, "stats", "--from", "2026-10-24", "--to", "2026-10-26", "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["period"] for r in rows] == ["2026-10-24", "2026-10-25", "2026-10-26"]
    day = rows[1]
    assert (day["visits_self_service"], day["visits_staffed"], day["booth_uses"], day["denied"]) == ("2", "1", "1", "1")


def test_stats_by_hour_has_25_hours_on_the_autumn_dst_day(branch, capsys):
    _seed_events(branch)
    code, out, _ = run(branch, capsys, "stats", "--from", "2026-10-25", "--to", "2026-10-25", "--by", "hour", "--json")
    rows = json.loads(out)
    assert len(rows) == 25
    assert rows[0]["period"] == "2026-10-25T00:00+03:00"
    assert [r["period"] for r in rows[3:5]] == ["2026-10-25T03:00+03:00", "2026-10-25T03:00+02:00"]
    assert sum(r["visits_self_service"] for r in rows) == 2
    assert rows[12]["denials"] == {"underage": 1}


def test_stats_table_has_totals(branch, capsys):
    _seed_events(branch)
    code, out, _ = run(branch, capsys, "stats", "--from", "2026-10-25", "--to", "2026-10-25")
    total = out.splitlines()[-1].split()
    assert total[:5] == ["total", "3", "3", "2", "1"], "physical visits, granted taps, self-service, staffed"


def test_events_shows_local_time_and_no_raw_numbers(branch, capsys):
    evs = _seed_events(branch)
    code, out, _ = run(branch, capsys, "events", "--json", "--limit", "10")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["uuid"] for r in rows] == [e.uuid for e in reversed(evs)]
    assert rows[-1]["local_time"] == "2026-10-25T00:30:00+03:00"
    code, out, _ = run(branch, capsys, "events")
    assert out.splitlines()[-1].startswith("2026-10-25 00:30:00  entrance")


def test_events_in_the_repeated_dst_hour_show_their_offset(branch, capsys):
    store = Store(branch / "omaovi.db")
    first = datetime(2026, 10, 25, 0, 15, tzinfo=timezone.utc)  # 03:15 EEST, and an hour later 03:15 EET
    store.record([
        Event(ts=first, door="entrance", type="tap", reason="granted", mode="self_service", card_key="a" * 64),
        Event(ts=first + timedelta(hours=1), door="entrance", type="door_held_open", detail={"seconds": 60}),
        Event(ts=first + timedelta(hours=3), door="entrance", type="exit"),
    ])
    code, out, _ = run(branch, capsys, "events")
    assert [line.split("  ")[0] for line in out.splitlines()] == [
        "2026-10-25 05:15:00", "2026-10-25 03:15:00+02:00", "2026-10-25 03:15:00+03:00"]
    code, out, _ = run(branch, capsys, "events", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    # As in the central protocol: the detail is an object, or null without one.
    assert [row["detail"] for row in rows] == [None, {"seconds": 60}, None]


def test_a_missing_config_file_is_named(tmp_path, capsys):
    code = main(["events", "--config", str(tmp_path / "nope.toml")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{tmp_path / 'nope.toml'}: (file)" in err and "file not found" in err


def test_the_import_examples_in_the_docs_import(tmp_path):
    import re
    from pathlib import Path

    from sync.kirkanta import parse_schedules
    from sync.patrons_csv import parse_patrons

    text = (Path(__file__).resolve().parent.parent / "docs" / "imports.md").read_text()
    csv_block = re.search(r"```csv\n(.*?)```", text, re.S).group(1)
    json_block = re.search(r"```json\n(.*?)```", text, re.S).group(1)
    patrons = parse_patrons(csv_block, b"k" * 32, datetime.now(timezone.utc))
    assert [p.blocked_reason for p in patrons] == [None, "fines"]
    assert len(parse_schedules(json_block)) == 2


def test_stats_count_pin_lockouts_in_json_and_csv(branch, capsys):
    store = Store(branch / "omaovi.db")
    store.record([Event(ts=datetime(2026, 11, 25, 12, tzinfo=timezone.utc), door="entrance", type="pin_lockout")])
    store.close()
    _, out, _ = run(branch, capsys, "stats", "--from", "2026-11-25", "--to", "2026-11-25", "--json")
    assert json.loads(out)[0]["pin_lockouts"] == 1
    _, out, _ = run(branch, capsys, "stats", "--from", "2026-11-25", "--to", "2026-11-25", "--csv")
    assert next(csv.DictReader(io.StringIO(out)))["pin_lockouts"] == "1"


def test_stats_csv_in_the_finnish_excel_dialect(branch, capsys):
    _seed_events(branch)
    _, out, _ = run(branch, capsys, "stats", "--from", "2026-10-25", "--to", "2026-10-25", "--csv", "--dialect", "excel-fi")
    assert out.startswith("\ufeffperiod;physical_visits;granted_taps;") and out.endswith("\r\n")


def test_stats_table_shows_the_hours_still_to_come_apart(branch, capsys):
    """Open all day: today is half elapsed, half planned, whatever today is."""
    from device.schedule import Period

    store = Store(branch / "omaovi.db")
    store.set_weekly({d: (Period(0, 1440, "self_service"),) for d in range(7)})
    store.close()
    today = datetime.now(timezone.utc).astimezone(ZoneInfo("Europe/Helsinki")).date()
    _, out, _ = run(branch, capsys, "stats", "--from", str(today), "--to", str(today + timedelta(days=1)))
    header, *_rows, total, planned = out.splitlines()
    assert "planned" not in header + total
    assert planned.startswith("not yet come, planned by the hours in force now: self_service_open_hours ")
    assert float(total.split()[header.split().index("self_service_open_hours")]) < 24


def test_every_user_action_reports_success_with_exit_code_0(branch, capsys, monkeypatch):
    """Scripts and admins read the exit code: a change made must not end in a traceback."""
    from admin_web import accounts

    steps = [
        (("user", "add", "anna", "--role", "admin", "--password-stdin"), "Added admin user anna."),
        (("user", "add", "bert", "--password-stdin"), "Added staff user bert."),
        (("user", "passwd", "bert", "--password-stdin"), "Changed the password of bert; their sessions ended."),
        (("user", "disable", "bert"), "Disabled bert; their sessions ended."),
        (("user", "enable", "bert"), "Enabled bert."),
    ]
    for args, message in steps:
        monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password-1\n"))
        code, out, err = run(branch, capsys, *args)
        assert (code, out.strip(), err) == (0, message, "")
    store = Store(branch / "omaovi.db")
    assert not accounts.get_user(store, "bert").disabled
    assert accounts.authenticate(store, "bert", "a-long-password-1") is not None
    store.close()


def test_a_patron_file_with_shifted_columns_names_no_card_number(branch, capsys):
    """The numbers landed in self_service and the dates in card_number: the errors reach the journal from a timer job."""
    (branch / "patrons.csv").write_text(
        "card_number,self_service,valid_until\n"
        "2027-05-31,12345678,1\n"
        "2027-05-31,400012341234,1\n"
    )
    code, out, err = run(branch, capsys, "patrons", "import", str(branch / "patrons.csv"))
    assert code == 1 and "Nothing was imported." in err
    assert "line 2, self_service: '[8 digits]' is not a yes/no value" in err
    assert "12345678" not in err + out and "400012341234" not in err + out


def test_patrons_import_without_a_terminal_prints_a_line_at_every_tenth(branch, capsys):
    """From a timer job the output goes to the journal: plain lines, not a redrawn bar."""
    rows = "".join(f"{10_000_000 + n},1,2000-01-01\n" for n in range(40_000))  # 0.8 MB
    (branch / "patrons.csv").write_text("card_number,self_service,age_ok_from\n" + rows)
    code, out, err = run(branch, capsys, "patrons", "import", str(branch / "patrons.csv"))
    assert code == 0 and "Imported 40000 patron(s)" in out
    progress = [line for line in err.splitlines() if "MB read" in line]
    assert "\r" not in err and len(progress) == 10
    assert progress[-1] == "100% of 0.8 MB read, 40,000 rows"


def test_the_progress_bar_on_a_terminal_is_redrawn_in_place():
    from device.progress import ProgressLine
    from sync.patrons_csv import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    clock = [0.0]
    out = Terminal()
    bar = ProgressLine(out, 2 * 2**20, clock=lambda: clock[0])
    for done in range(0, 2 * 2**20 + 1, 2**18):
        clock[0] += 1
        bar.show(Progress(done, 2 * 2**20, done // 40))
    bar.close()
    drawn = out.getvalue()
    assert drawn.count("\n") == 1 and drawn.endswith("\n")
    assert drawn.rstrip("\n").split("\r")[-1] == f"[{'#' * 30}] 100% of 2.0 MB read, 52,428 rows"
    assert f"\r[{'#' * 15}{'.' * 15}]  50% of 2.0 MB read" in drawn
