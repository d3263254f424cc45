"""`omaovi demo` as a new user meets it: type the demo cards, read the decisions."""

import re
import sqlite3
import subprocess
import sys

from device.demo import DEMO_CARDS


def run_demo(tmp_path, lines):
    return subprocess.run(
        [sys.executable, "-m", "device.cli", "demo", "--dir", str(tmp_path / "demo")],
        input="\n".join(lines) + "\n",
        capture_output=True, text=True, timeout=60,
        env={"GPIOZERO_PIN_FACTORY": "mock", "PATH": "/usr/bin:/bin"},
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
    assert "not a card number" in out
    assert "usage: booth NUMBER" in out and "unknown_card" not in out
    assert "door_forced_open" in out and "exit" in out
