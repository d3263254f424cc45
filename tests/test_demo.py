"""`omaovi demo` as a new user meets it: type the demo cards, read the decisions."""

import re
import sqlite3
import subprocess
import sys

from device.demo import DEMO_CARDS
from simulated import child_env


def run_demo(tmp_path, lines):
    return subprocess.run(
        [sys.executable, "-m", "device.cli", "demo", "--dir", str(tmp_path / "demo"), "--web-port", "0"],
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
    assert said[0].startswith("'stauts' is not a command or a card number. Commands: booth, open, close, exit, in, out,")
    assert said[1].startswith("'blah' is not a command or a card number.")
    assert "DENIED" not in result.stdout
    taps = sqlite3.connect(tmp_path / "demo" / "omaovi.db").execute("SELECT count(*) FROM events WHERE type = 'tap'")
    assert taps.fetchone()[0] == 0, "a mistyped command is neither a tap nor a refusal in the statistics"


def test_the_seeded_booth_reservation_is_no_no_show_at_start_but_becomes_one_if_unused(tmp_path):
    from datetime import datetime, timedelta, timezone

    from gpiozero.pins.mock import MockFactory

    from device.controller import Controller
    from device.demo import prepare
    from device.store import Store

    start = datetime.now(timezone.utc)
    cfg = prepare(tmp_path / "demo", fresh=True, now=start)
    store = Store(cfg.database)
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


def test_the_demo_serves_the_staff_page_with_a_fresh_demo_login(tmp_path):
    import urllib.parse
    import urllib.request
    from http.cookiejar import CookieJar

    demo = subprocess.Popen(
        [sys.executable, "-m", "device.cli", "demo", "--dir", str(tmp_path / "demo"), "--web-port", "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=child_env(GPIOZERO_PIN_FACTORY="mock", PATH="/usr/bin:/bin"),
    )
    try:
        for line in demo.stdout:
            found = re.search(r"Staff page: (http://127\.0\.0\.1:\d+/)\s+\(user (\w+), password (\S+)\)", line)
            if found:
                break
        else:
            raise AssertionError("the banner names no staff page")
        url, user, password = found.groups()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        login_page = opener.open(url + "login", timeout=5).read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', login_page).group(1)
        form = urllib.parse.urlencode({"csrf_token": token, "username": user, "password": password}).encode()
        after = opener.open(url + "login?next=/account", data=form, timeout=5)
        assert after.url.endswith("/account") and f"{user}" in after.read().decode()
        demo.stdin.write("quit\n")
        demo.stdin.flush()
        assert demo.wait(20) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        demo.stdout.close()
        demo.stderr.close()
        demo.stdin.close()
