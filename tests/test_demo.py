"""`omaovi demo` as a new user meets it: type the demo cards, read the decisions."""

import re
import sqlite3
import subprocess
import sys

from device.demo import DEMO_CARDS
from simulated import child_env


def run_demo(tmp_path, lines):
    return subprocess.run(
        [sys.executable, "-m", "device.cli", "demo", "--dir", str(tmp_path / "demo"), "--web-port", "0", "--central-port", "0"],
        input="\n".join(lines) + "\n",
        capture_output=True, text=True, timeout=60,
        env=child_env(GPIOZERO_PIN_FACTORY="mock", PATH="/usr/bin:/bin"),
    )


def decision_lines(stdout):
    return [line.split() for line in stdout.splitlines() if re.search(r"\b(GRANTED|DENIED)\b", line)]


def test_demo_cards_behave_as_the_banner_says(tmp_path):
    result = run_demo(tmp_path, ["10000001", "10000002", "10000003", "10000004", "10000005", "90000001",
                                 "booth 10000006", "booth 10000001", "55555555", "quit"])
    assert result.returncode == 0, result.stderr
    for number in DEMO_CARDS:
        assert number in result.stdout, "the banner lists every demo card"
    got = [(words[1], words[2], words[3]) for words in decision_lines(result.stdout)]
    assert got == [
        ("entrance", "GRANTED", "granted"),
        ("entrance", "DENIED", "blocked"),
        ("entrance", "DENIED", "underage"),
        ("entrance", "DENIED", "terms_not_accepted"),
        ("entrance", "DENIED", "card_expired"),
        ("entrance", "GRANTED", "staff"),
        ("booth", "GRANTED", "granted"),
        ("booth", "DENIED", "no_reservation"),
        ("entrance", "DENIED", "unknown_card"),
    ]
    assert all("mode=" in " ".join(words) for words in decision_lines(result.stdout))


def test_demo_stores_no_raw_card_number(tmp_path):
    run_demo(tmp_path, list(DEMO_CARDS) + ["quit"])
    db = tmp_path / "demo" / "omaovi.db"
    dump = "\n".join(sqlite3.connect(db).iterdump())
    for number in DEMO_CARDS:
        assert number not in dump
    assert dump.count("INSERT INTO \"events\"") >= len(DEMO_CARDS)


def test_demo_door_commands_and_garbled_input(tmp_path):
    result = run_demo(tmp_path, ["open", "close", "exit", "not-a-card!", "booth", "status", "events"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "entrance door is now forced" in out, "opening a locked door without a card is a forced opening"
    assert "exit button pressed; entrance is unlocked" in out
    assert "'not-a-card!' is not a command or a card number" in out
    assert "usage: booth NUMBER" in out and "unknown_card" not in out
    assert "door_forced_open" in out and "exit" in out


def answers(stdout):
    """What the console printed after each prompt, one entry per line typed."""
    return [part.strip() for part in stdout.split("card> ")[1:]]


def test_every_simulated_input_has_a_command_and_every_door_starts_closed(tmp_path):
    result = run_demo(tmp_path, ["status", "open booth", "close booth", "in", "in entrance", "out",
                                 "exit booth", "in booth", "quit"])
    assert result.returncode == 0, result.stderr
    status, opened, closed, came_in, came_in_again, went_out, no_exit, no_counter, _ = answers(result.stdout)
    assert "Door entrance: locked" in status and "Door booth: locked" in status, \
        "mock contacts are driven closed at start: no door reads as standing open"
    assert "People inside (estimate): 0" in status
    assert opened == "booth door is now forced" and closed == "booth door is now locked"
    assert came_in.endswith("people inside (estimate): 1") and came_in_again.endswith("people inside (estimate): 2")
    assert went_out == "people counter at entrance: one out; people inside (estimate): 1"
    assert no_exit == "usage: exit [DOOR], where DOOR is entrance"
    assert no_counter == "usage: in [DOOR], where DOOR is entrance"
    for command in ("open [DOOR]", "close [DOOR]", "exit [DOOR]", "in [DOOR]", "out [DOOR]"):
        assert command in result.stdout, f"the help lists {command}"


def test_a_word_that_is_not_a_command_is_not_tapped(tmp_path):
    result = run_demo(tmp_path, ["stauts", "blah", "quit"])
    assert result.returncode == 0, result.stderr
    said = answers(result.stdout)[:2]
    assert said[0].startswith("'stauts' is not a command or a card number. Commands: booth, book, cancel, open, close, exit, in, out,")
    assert said[1].startswith("'blah' is not a command or a card number.")
    assert "DENIED" not in result.stdout
    taps = sqlite3.connect(tmp_path / "demo" / "omaovi.db").execute("SELECT count(*) FROM events WHERE type = 'tap'")
    assert taps.fetchone()[0] == 0, "a mistyped command is neither a tap nor a refusal in the statistics"


def test_the_seeded_booth_reservation_is_no_no_show_at_start_but_becomes_one_if_unused(tmp_path):
    """The seeded booking comes from the demo's central service, through the branch's sync."""
    from datetime import datetime, timedelta, timezone

    from gpiozero.pins.mock import MockFactory

    from device.cards import load_consortium_key
    from device.controller import Controller
    from device.demo import BOOTH_HOLDER, demo_patrons, prepare
    from device.demo_central import DemoCentral
    from device.store import Store

    start = datetime.now(timezone.utc)
    cfg = prepare(tmp_path / "demo", fresh=True, now=start)
    central = DemoCentral(tmp_path / "demo", cfg, 0)
    try:
        central.start(demo_patrons(load_consortium_key(cfg.consortium_key_file), start.date(), start), BOOTH_HOLDER, start)
    finally:
        central.close()
    store = Store(cfg.database)
    assert len(store.reservations_for(demo_key(cfg, BOOTH_HOLDER), "smartblock-1", start)) == 1, "synced from the central service"
    wall = [start + timedelta(seconds=5)]
    controller = Controller(cfg, store, pin_factory=MockFactory(), start_readers=False, wall=lambda: wall[0])
    try:
        controller.step()
        assert [e for e in store.events(limit=100) if e["type"] == "reservation_no_show"] == []
    finally:
        controller.close()
    wall[0] = start + timedelta(minutes=cfg.policy.no_show_minutes + 1)
    controller = Controller(cfg, store, pin_factory=MockFactory(), start_readers=False, wall=lambda: wall[0])
    try:
        controller.step()
        assert [e["type"] for e in store.events(limit=100)] == ["reservation_no_show"]
    finally:
        controller.close()
        store.close()


def demo_key(cfg, number):
    from device.cards import card_key, load_consortium_key

    return card_key(load_consortium_key(cfg.consortium_key_file), number)


def test_a_booth_booked_at_the_central_service_opens_and_a_cancelled_one_does_not(tmp_path):
    """The demo's central service and sync are the real ones: book, tap, cancel, tap."""
    first = run_demo(tmp_path, ["book 10000001", "quit"])
    taken = answers(first.stdout)[0]
    assert taken.startswith("the booth is taken then:"), "the seeded booking of 10000006 holds the booth now"
    seeded = re.search(r"'cancel (\w+)'", taken).group(1)
    result = run_demo(tmp_path, [f"cancel {seeded}", "booth 10000006", "book 10000001 2", "booth 10000001", "booth 10000002",
                                 "book 10000002 9", "quit"])
    assert result.returncode == 0, result.stderr
    cancelled, holder, booked, granted, other, too_long, _ = answers(result.stdout)
    assert cancelled.startswith(f"cancelled {seeded}") and "DENIED   no_reservation" in holder
    reference = re.search(r"reference (\w+)", booked).group(1)
    assert "GRANTED  granted" in granted and "DENIED   no_reservation" in other
    assert "H from 1 to 4 hours" in too_long

    again = run_demo(tmp_path, [f"cancel {reference}", "booth 10000001", "quit"])
    assert "DENIED   no_reservation" in answers(again.stdout)[1], "a cancelled booking stops opening the booth once synced"
