"""No raw card number is kept anywhere, and old events are folded into counts and deleted.

A whole branch runs the ways a card number reaches it: taps at the doors (the
device on mock pins), the staff page (a staff card, a local block, a card lookup,
a patron CSV upload), and the console (``omaovi patrons import``, ``omaovi
card-key``). Afterwards every text and blob in the database, the raw bytes of
the database and its WAL, and every log line are searched for each number.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime, time, timedelta, timezone

import pytest
from gpiozero.pins.mock import MockFactory

from device import stats
from device.cards import card_key, load_consortium_key, normalize
from device.cli import main
from device.controller import Controller
from device.events import parse_utc
from device.policy import Reservation
from device.schedule import Period
from device.store import Store
from webclient import WebClient, make_app

WEB_CSV_GRANTED, WEB_CSV_BLOCKED = "2040718800011", "2040718800012"
CLI_CSV_GRANTED, CLI_CSV_NO_SELF_SERVICE = "2040718800021", "2040718800022"
STAFF_CARD = "2040 7188 0003 1"  # typed with spaces, as printed on the card
LOCAL_BLOCK = "2040718800041"
LOOKED_UP = "2040718800051"
UNKNOWN, UNKNOWN_LETTERS = "2040718800061", "a1b2c3d4e5f6"
BOOTH_BOOKED, BOOTH_NOT_BOOKED = "2040718800071", "2040718800072"
CARD_KEY_ASKED = "2040718800081"
NUMBERS = (WEB_CSV_GRANTED, WEB_CSV_BLOCKED, CLI_CSV_GRANTED, CLI_CSV_NO_SELF_SERVICE, STAFF_CARD, LOCAL_BLOCK, LOOKED_UP,
           UNKNOWN, UNKNOWN_LETTERS, BOOTH_BOOKED, BOOTH_NOT_BOOKED, CARD_KEY_ASKED)


def _forms(number: str) -> set[str]:
    """The number as typed and as the software normalizes it: neither may be stored."""
    return {number, normalize(number), number.upper()}


@pytest.fixture
def controller(branch_config):
    store = Store(branch_config.database, durable=True)
    store.set_weekly({day: (Period(0, 1440, "self_service"),) for day in range(7)})
    device = Controller(branch_config, store, pin_factory=MockFactory(), start_readers=False)
    yield device
    device.close()
    store.close()


def _tap(device: Controller, door: str, number: str) -> str:
    result = device.tap(door, number)
    device.step()
    return result.decision.reason.value


def test_after_a_full_scenario_no_raw_card_number_is_anywhere(branch_config, controller, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    app = make_app(branch_config)
    app.test_client_class = WebClient
    admin = app.test_client()
    admin.login("admin")
    consortium = load_consortium_key(branch_config.consortium_key_file)

    # The staff page: a staff card, a local block, a patron CSV upload, a card lookup.
    assert admin.post("/cards/staff", data={"staff_number": STAFF_CARD, "staff_note": "Caretaker"}).status_code == 302
    assert admin.post("/cards/blocks", data={"block_number": LOCAL_BLOCK, "block_note": "Damaged the booth", "block_until": ""}).status_code == 302
    web_csv = (f"card_number,self_service,blocked_reason,age_ok_from\n{WEB_CSV_GRANTED},1,,2000-01-01\n"
               f"{WEB_CSV_BLOCKED},1,fines,2000-01-01\n")
    upload = {"csv_file": (io.BytesIO(web_csv.encode()), "patrons.csv")}
    assert admin.post("/cards/import", data=upload, content_type="multipart/form-data").status_code == 302
    lookup = admin.post("/events/card", data={"card_number": LOOKED_UP})
    assert lookup.status_code == 302 and card_key(consortium, LOOKED_UP) in lookup.headers["Location"]

    # The console: a CSV import that adds to the web one, and a card key asked for.
    cli_csv = tmp_path / "export.csv"
    cli_csv.write_text(f"card_number;self_service;age_ok_from\n{CLI_CSV_GRANTED};1;2000-01-01\n"
                       f"{CLI_CSV_NO_SELF_SERVICE};0;2000-01-01\n{LOCAL_BLOCK};1;2000-01-01\n")
    config = ["-c", str(branch_config.path)]
    assert main(["patrons", "import", str(cli_csv), *config]) == 0
    assert main(["card-key", CARD_KEY_ASKED, *config]) == 0
    assert capsys.readouterr().out.strip().endswith(card_key(consortium, CARD_KEY_ASKED))

    # The doors: granted, refused, staff and the booth.
    now = datetime.now(timezone.utc)
    controller.store.put_reservations([Reservation(
        "r-1", "smartblock-1", card_key(consortium, BOOTH_BOOKED), now - timedelta(minutes=5), now + timedelta(hours=1))])
    taps = {
        ("entrance", WEB_CSV_GRANTED): "granted", ("entrance", WEB_CSV_BLOCKED): "blocked",
        ("entrance", CLI_CSV_GRANTED): "granted", ("entrance", STAFF_CARD): "staff",
        ("entrance", LOCAL_BLOCK): "blocked", ("entrance", LOOKED_UP): "unknown_card",
        ("entrance", UNKNOWN): "unknown_card", ("entrance", UNKNOWN_LETTERS): "unknown_card",
        ("booth", BOOTH_BOOKED): "granted", ("booth", BOOTH_NOT_BOOKED): "no_reservation",
    }
    outcomes = {(door, number): _tap(controller, door, number) for door, number in taps}
    refused_for_no_self_service = _tap(controller, "entrance", CLI_CSV_NO_SELF_SERVICE)
    assert outcomes == taps and refused_for_no_self_service not in ("granted", "staff")
    # The staff page shows the day's work, as it would be read.
    assert admin.get("/events").status_code == 200 and admin.get("/users/audit").status_code == 200

    found = []
    reader = Store(branch_config.database)
    try:
        tables = [row[0] for row in reader.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert {"events", "patrons", "staff_cards", "local_blocks", "audit_log"} <= set(tables)
        assert reader.conn.execute("SELECT count(*) FROM events WHERE type = 'tap'").fetchone()[0] == len(taps) + 1
        for table in tables:
            cursor = reader.conn.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in cursor.description]
            for row in cursor:
                for column, value in zip(columns, row):
                    text = value.decode("latin-1") if isinstance(value, bytes) else value
                    if isinstance(text, str):
                        found += [(table, column, n) for n in NUMBERS for form in _forms(n) if form in text]
    finally:
        reader.close()
    database = branch_config.database
    files = [path for path in database.parent.glob(database.name + "*")]
    assert any(path.name.endswith("-wal") for path in files)
    for path in files:
        data = path.read_bytes()
        found += [(path.name, n) for n in NUMBERS for form in _forms(n) if form.encode() in data]
    log_text = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
    assert caplog.records, "the scenario logged nothing, so the log scan proves nothing"
    found += [("log", n) for n in NUMBERS for form in _forms(n) if form in log_text]
    assert found == []


def test_events_older_than_retention_are_deleted_and_their_days_still_count(branch_config, controller):
    tz, store = branch_config.tz, controller.store
    retention = branch_config.policy.event_retention_days
    today = datetime.now(tz).date()
    old_day, recent_day = today - timedelta(days=retention + 3), today - timedelta(days=1)
    for day, hour in ((old_day, 10), (old_day, 15), (recent_day, 11)):
        controller.wall = lambda day=day, hour=hour: datetime.combine(day, time(hour), tz).astimezone(timezone.utc)
        assert _tap(controller, "entrance", UNKNOWN) == "unknown_card"
    before = {day: stats.summarize(store, tz, day, day) for day in (old_day, recent_day)}
    assert before[old_day][0]["denials"] == {"unknown_card": 2} and before[recent_day][0]["denials"] == {"unknown_card": 1}

    controller.wall = lambda: datetime.combine(today, time(12), tz).astimezone(timezone.utc)
    controller._apply_retention()

    left = [parse_utc(ts) for (ts,) in store.conn.execute("SELECT ts FROM events WHERE type = 'tap'")]
    assert [moment.astimezone(tz).date() for moment in left] == [recent_day]
    assert {day: stats.summarize(store, tz, day, day) for day in (old_day, recent_day)} == before
