"""The SIP2 check at tap time, as a patron at the entrance meets it.

A real SIP2 server (``tests/sip2_server.py``, built on pysip2) on 127.0.0.1 and a
controller on gpiozero's mock pins; each test taps a card and looks at what the
door did, what the event log and the patron cache say, and what reached the server.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import tomllib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from device.cards import card_key
from device.cli import main
from device.config import Config, ConfigError, DoorConfig, Sip2Settings, load_sections
from device.controller import Controller, sip2_checker
from device.policy import Patron, Reservation
from device.schedule import Period
from device.store import Store
from tests.sip2_server import PERSONAL, FakePatron, Sip2Peer

KEY = b"sip2-tap-test-consortium-key-000"
#: Allowed in the cache, blocked in the library system (charge privileges denied).
BLOCKED_IN_SIP2 = "10000002"
#: Valid in the library system; its cache entry is months old.
STALE = "10000001"
#: Valid in the library system, unknown to the cache.
NOT_CACHED = "10000007"
#: Allowed in the cache; used where the library system does not answer.
CACHED_OK = "10000008"
BOOTH_HOLDER = "10000006"
#: Valid in the library system, in a class the branch does not let in on its own (home delivery).
REFUSED_CLASS = "10000009"
#: Known to neither the cache nor the library system.
NOBODY = "10000099"

SERVER_PATRONS = {
    STALE: FakePatron(extra={"PA": "0", "PC": "AIKUINEN"}),
    BLOCKED_IN_SIP2: FakePatron(status="Y" + " " * 13, extra={"PA": "0", "PC": "AIKUINEN"}),
    NOT_CACHED: FakePatron(extra={"PA": "0", "PC": "AIKUINEN"}),
    CACHED_OK: FakePatron(extra={"PA": "0", "PC": "AIKUINEN"}),
    BOOTH_HOLDER: FakePatron(status="Y" + " " * 13, extra={"PA": "0", "PC": "AIKUINEN"}),
    REFUSED_CLASS: FakePatron(extra={"PA": "0", "PC": "KOTIPALVELU"}),
}
ADULT = date(2000, 1, 1)


class Branch:
    """One entrance and one booth, open for self-service all day, with a SIP2 server."""

    def __init__(self, tmp_path, *, timeout: float = 1.0, breaker_failures: int = 3):
        self.server = Sip2Peer(SERVER_PATRONS)
        self.config = Config(
            path=tmp_path / "omaovi.toml", branch="test", timezone="Europe/Helsinki",
            database=tmp_path / "omaovi.db", consortium_key_file=tmp_path / "key",
            doors=(
                DoorConfig(id="entrance", kind="entrance", lock_pin=17),
                DoorConfig(id="booth", kind="booth", resource="smartblock-1", lock_pin=5),
            ),
        )
        self.store = Store(self.config.database)
        self.store.set_weekly({d: (Period(0, 1440, "self_service"),) for d in range(7)})
        now = datetime.now(timezone.utc)
        self.store.put_patrons([
            Patron(card_key=self.key(BLOCKED_IN_SIP2), self_service=True, age_ok_from=ADULT, fetched_at=now),
            Patron(card_key=self.key(STALE), self_service=True, age_ok_from=ADULT, valid_until=date(2099, 1, 1),
                   fetched_at=now - timedelta(days=100)),
            Patron(card_key=self.key(CACHED_OK), self_service=True, age_ok_from=ADULT, fetched_at=now),
            Patron(card_key=self.key(BOOTH_HOLDER), self_service=True, age_ok_from=ADULT, fetched_at=now),
            Patron(card_key=self.key(REFUSED_CLASS), self_service=True, age_ok_from=ADULT, fetched_at=now),
        ], source="central")
        self.store.put_reservations([Reservation(
            "r-1", "smartblock-1", self.key(BOOTH_HOLDER), now - timedelta(minutes=5), now + timedelta(hours=1))])
        password_file = tmp_path / "sip2.password"
        password_file.write_text("salasana-123\n")
        self.checker = sip2_checker(Sip2Settings(
            host="127.0.0.1", port=self.server.port, username="ovi", password_file=password_file,
            institution="KIRJASTO", profile="koha-suomi", allowed_classes=("AIKUINEN",),
            timeout=timeout, breaker_failures=breaker_failures,
        ))
        self.factory = MockFactory()
        self.decided: list = []
        self.controller = Controller(
            self.config, self.store, consortium_key=KEY, pin_factory=self.factory, start_readers=False,
            sip2=self.checker, on_tap=self.decided.append,
        )

    @staticmethod
    def key(number: str) -> str:
        return card_key(KEY, number)

    def tap(self, number: str, door: str = "entrance"):
        """Tap, then run the loop's work (on this thread) until the tap is decided."""
        self.decided.clear()
        self.controller.tap(door, number)
        deadline = time.monotonic() + 10
        while not self.decided and time.monotonic() < deadline:
            self.controller.step()
            time.sleep(0.002)
        return self.decided[-1]

    def settle(self, seconds: float) -> None:
        """Run the loop's work for a while: late answers arrive."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.controller.step()
            time.sleep(0.005)

    def unlocked(self, door: str = "entrance") -> bool:
        return self.factory.pin(self.config.door(door).lock_pin).state

    def cache_row(self, number: str) -> dict:
        rows = self.store.db.query(
            "SELECT self_service, blocked_reason, valid_until, age_ok_from, fetched_at, source FROM patrons WHERE card_key = ?",
            [self.key(number)],
        )
        return next(iter(rows), {})

    def cached(self, number: str) -> Patron | None:
        return self.store.patron(self.key(number))

    def close(self):
        self.controller.close()
        self.checker.close()
        self.server.stop()
        self.store.close()


@pytest.fixture
def branch(tmp_path):
    b = Branch(tmp_path)
    yield b
    b.close()


def test_a_card_blocked_in_the_library_system_is_refused_and_the_cache_learns_it(branch):
    result = branch.tap(BLOCKED_IN_SIP2)

    assert (result.decision.granted, result.decision.reason.value) == (False, "blocked")
    assert not branch.unlocked()
    assert branch.store.events(limit=1)[0]["reason"] == "blocked"
    patron = branch.cached(BLOCKED_IN_SIP2)
    assert (patron.blocked_reason, patron.self_service, patron.age_ok_from) == ("charge_privileges_denied", False, ADULT)
    assert branch.server.patron_requests() == 1


def test_a_stale_cache_entry_valid_in_the_library_system_opens_the_door_and_is_refreshed(branch):
    assert branch.cached(STALE).fetched_at < datetime.now(timezone.utc) - timedelta(days=90)

    result = branch.tap(STALE)

    assert (result.decision.granted, result.decision.reason.value) == (True, "granted")
    assert branch.unlocked()
    patron = branch.cached(STALE)
    assert patron.fetched_at > datetime.now(timezone.utc) - timedelta(minutes=1)
    assert (patron.self_service, patron.blocked_reason, patron.age_ok_from) == (True, None, ADULT)
    # koha-suomi reports no expiry (Koha blocks an expired card itself), so none is kept.
    assert patron.valid_until is None
    assert branch.cache_row(STALE)["source"] == "sip2"


def test_a_card_only_the_library_system_knows_is_underage_in_self_service_hours(branch):
    """SIP2 gives no age: the age limit must come from the central service or the CSV."""
    result = branch.tap(NOT_CACHED)

    assert result.decision.reason.value == "underage"
    assert not branch.unlocked()
    row = branch.cache_row(NOT_CACHED)
    assert (row["self_service"], row["blocked_reason"], row["age_ok_from"], row["source"]) == (1, None, None, "sip2")


def test_a_booth_is_decided_by_its_reservation_without_asking_the_library_system(branch):
    result = branch.tap(BOOTH_HOLDER, door="booth")

    assert result.decision.granted and branch.unlocked("booth")
    assert branch.server.patron_requests() == 0
    assert branch.cached(BOOTH_HOLDER).blocked_reason is None


def test_a_library_system_that_hangs_does_not_hold_up_even_the_first_tap_of_a_cached_card(tmp_path):
    branch = Branch(tmp_path, timeout=1.5)
    try:
        branch.server.faults = ["slow"]

        first = branch.tap(CACHED_OK)

        # Decided from the cache while the check still waits: the breaker has not even opened yet.
        assert (first.decision.granted, first.decision.reason.value) == (True, "granted")
        assert branch.checker.breaker.state == "closed"
        assert branch.server.patron_requests() == 1
        deadline = time.monotonic() + 10
        while branch.checker.breaker.state != "open" and time.monotonic() < deadline:
            branch.settle(0.05)
        assert branch.checker.breaker.state == "open"

        # The breaker is open: these are decided from the cache without contacting the server.
        later = [branch.tap(CACHED_OK), branch.tap(BLOCKED_IN_SIP2), branch.tap(STALE)]

        assert [r.decision.reason.value for r in later] == ["granted", "granted", "unavailable"]
        assert branch.server.patron_requests() == 1
        assert branch.checker.breaker.state == "open"
        assert branch.cached(BLOCKED_IN_SIP2).blocked_reason is None  # the cache is untouched without an answer
    finally:
        branch.close()


def test_a_library_system_that_is_not_there_opens_the_breaker_after_its_failures(tmp_path):
    branch = Branch(tmp_path, breaker_failures=2)
    try:
        branch.server.stop()  # connection refused from now on

        results = [branch.tap(CACHED_OK) for _ in range(3)]

        assert [r.decision.reason.value for r in results] == ["granted"] * 3
        assert branch.checker.breaker.state == "open"
        assert branch.server.connections == 0
    finally:
        branch.close()


def test_a_bug_in_the_check_does_not_stop_the_tap(branch, caplog, monkeypatch):
    def broken(number, pin=None):
        raise KeyError(number)

    monkeypatch.setattr(branch.checker, "check", broken)
    caplog.set_level(logging.DEBUG)

    result = branch.tap(CACHED_OK)

    assert (result.decision.granted, result.decision.reason.value) == (True, "granted")
    assert "SIP2 check raised KeyError; deciding from the cache" in caplog.text
    assert CACHED_OK not in caplog.text


def test_no_raw_card_number_or_personal_value_reaches_the_database_or_the_log(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    branch = Branch(tmp_path, timeout=0.3)
    try:
        for number in (STALE, BLOCKED_IN_SIP2, NOT_CACHED):
            branch.tap(number)
        branch.server.faults = ["slow"]
        branch.tap(CACHED_OK)  # a timeout, logged
        branch.tap(BOOTH_HOLDER, door="booth")
        dump = "\n".join(branch.store.conn.iterdump())
    finally:
        branch.close()

    assert "SIP2 check failed, deciding from the cache" in caplog.text
    for number in (STALE, BLOCKED_IN_SIP2, NOT_CACHED, CACHED_OK, BOOTH_HOLDER):
        assert number not in dump
        assert number not in caplog.text
    for value in PERSONAL.values():
        assert value not in dump
        assert value not in caplog.text


# -- the [sip2] section --------------------------------------------------------------

HEAD = """\
branch = "kallio"
database = "omaovi.db"
consortium_key_file = "consortium.key"

[[doors]]
id = "entrance"
kind = "entrance"
lock_pin = 17
"""

SIP2 = """
[sip2]
host = "sip2.kirjasto.example"
port = 6001
username = "ovi-kallio"
password_file = "sip2.password"
institution = "KALLIO"
profile = "koha-suomi"
"""


def test_the_sip2_section_is_read_with_its_defaults(tmp_path):
    path = tmp_path / "omaovi.toml"
    path.write_text(HEAD + SIP2)

    config, sections = load_sections(path)

    assert sections.central is None
    assert sections.sip2 == Sip2Settings(
        host="sip2.kirjasto.example", port=6001, username="ovi-kallio", password_file=tmp_path / "sip2.password",
        institution="KALLIO", profile="koha-suomi", location="", terminal_password="", tls=False, tls_verify=True,
        tls_ca_file=None, allowed_classes=(), blocking_status=("charge_privileges_denied", "card_reported_lost"),
        timeout=1.5, breaker_failures=3, breaker_cooldown=30.0,
    )
    path.write_text(HEAD)
    assert load_sections(path) == (config, type(sections)(central=None, sip2=None))


def test_every_problem_in_the_sip2_section_is_reported(tmp_path, capsys):
    path = tmp_path / "omaovi.toml"
    bad = (
        SIP2.replace('"sip2.kirjasto.example"', '"sip2.kirjasto.example:6001"').replace("6001\n", "70000\n")
        .replace('profile = "koha-suomi"', 'profile = "generik"')
        + 'tls = "yes"\nallowed_classes = "AIKUINEN"\nblocking_status = ["fines"]\ntimeout = 5\n'
        + 'breaker_failures = 0\nbreaker_cooldown = 0\nlocation = "A|B"\npasword_file = "x"\n'
    )
    path.write_text(HEAD + bad)

    assert main(["check-config", str(path)]) == 1

    assert capsys.readouterr().out.splitlines() == [
        f'{path}: sip2.host = "sip2.kirjasto.example:6001": must be a host name or IP address, such as "sip2.kirjasto.example"',
        f"{path}: sip2.port = 70000: must be a whole number from 1 to 65535",
        f'{path}: sip2.tls = "yes": must be true or false',
        f'{path}: sip2.location = "A|B": must be a string without \'|\'',
        f'{path}: sip2.profile = "generik": must be one of koha, koha-suomi, evergreen, lenient',
        f'{path}: sip2.allowed_classes = "AIKUINEN": must be a list of patron class codes, such as ["AIKUINEN"]',
        f'{path}: sip2.blocking_status = ["fines"]: must be a list of status bit names from '
        "charge_privileges_denied, renewal_privileges_denied, recall_privileges_denied, hold_privileges_denied, "
        "card_reported_lost, too_many_items_charged, too_many_items_overdue, too_many_renewals, "
        "too_many_claims_of_items_returned, too_many_items_lost, excessive_outstanding_fines, "
        "excessive_outstanding_fees, recall_overdue, too_many_items_billed",
        f"{path}: sip2.timeout = 5: must be a number from 0.1 to 3",
        f"{path}: sip2.breaker_failures = 0: must be a whole number from 1 to 100",
        f"{path}: sip2.breaker_cooldown = 0: must be a number from 1 to 3600",
        f'{path}: sip2.pasword_file = "x": unknown key; allowed keys here: allowed_classes, blocking_status, '
        "breaker_cooldown, breaker_failures, card_number_form, host, institution, location, password_file, port, profile, "
        "terminal_password, timeout, tls, tls_ca_file, tls_verify, username",
        "11 problem(s) found.",
    ]


def test_the_sip2_section_needs_its_server_login_and_profile(tmp_path):
    path = tmp_path / "omaovi.toml"
    path.write_text(HEAD + "[sip2]\n")
    with pytest.raises(ConfigError) as raised:
        load_sections(path)
    assert [str(p) for p in raised.value.problems] == [
        'sip2.host = (missing): required; must be a host name or IP address, such as "sip2.kirjasto.example"',
        "sip2.port = (missing): required; must be a whole number from 1 to 65535",
        "sip2.username = (missing): required; must be a non-empty string without '|'",
        "sip2.password_file = (missing): required; must be a file path (relative paths are relative to this file)",
        "sip2.institution = (missing): required; must be a non-empty string without '|'",
        "sip2.profile = (missing): required; must be one of koha, koha-suomi, evergreen, lenient",
    ]


def test_the_sip2_section_must_be_a_table(tmp_path):
    path = tmp_path / "omaovi.toml"
    path.write_text('sip2 = "sip2.kirjasto.example"\n' + HEAD)
    with pytest.raises(ConfigError) as raised:
        load_sections(path)
    assert str(raised.value) == f'{path}: sip2 = "sip2.kirjasto.example": must be a table'


def test_the_checker_reads_its_password_from_the_file_and_logs_in(tmp_path):
    server = Sip2Peer(SERVER_PATRONS)
    path = tmp_path / "omaovi.toml"
    path.write_text(HEAD + SIP2.replace('"sip2.kirjasto.example"', '"127.0.0.1"').replace("6001", str(server.port))
                    .replace('"ovi-kallio"', '"ovi"'))
    (tmp_path / "sip2.password").write_text("salasana-123\n")
    checker = sip2_checker(load_sections(path)[1].sip2)
    try:
        assert checker.check(STALE).self_service is True
        assert server.requests[0].login_password == "salasana-123"
    finally:
        checker.close()
        server.stop()


@pytest.mark.parametrize(
    "content, expected",
    [
        pytest.param(None, "sip2.password_file {path}: cannot be read: No such file or directory", id="missing"),
        pytest.param("\n", "sip2.password_file {path}: must hold the SIP2 password on one line, without '|'", id="empty"),
    ],
)
def test_a_device_without_its_sip2_password_does_not_start(tmp_path, capsys, content, expected):
    path = tmp_path / "omaovi.toml"
    path.write_text(HEAD + SIP2)
    password = tmp_path / "sip2.password"
    if content is not None:
        password.write_text(content)

    assert main(["device", "-c", str(path)]) == 1

    assert capsys.readouterr().err == f"omaovi device: {expected.format(path=password)}\n"
    assert not (tmp_path / "omaovi.db").exists()


def test_the_commented_sip2_section_in_the_example_loads(tmp_path):
    example = (Path(__file__).resolve().parent.parent / "examples" / "omaovi.toml").read_text(encoding="utf-8")
    commented = example[example.index("# [sip2]\n"):]
    block = "".join(line.removeprefix("# ") + "\n" for line in commented.splitlines() if not line.startswith("# #"))
    path = tmp_path / "omaovi.toml"
    path.write_text(HEAD + block)

    sip2 = load_sections(path)[1].sip2

    assert {f.name for f in dataclasses.fields(Sip2Settings)} <= set(tomllib.loads(block)["sip2"])
    assert (sip2.host, sip2.tls, sip2.profile, sip2.allowed_classes) == (
        "sip2.kirjasto.example", True, "koha-suomi", ("AIKUINEN", "OPISKELIJA"))


def test_no_check_is_made_when_the_answer_cannot_change_the_decision(branch):
    branch.store.set_weekly({d: () for d in range(7)})  # closed every day
    branch.controller._reload_hours()

    assert branch.tap(BLOCKED_IN_SIP2).decision.reason.value == "closed"
    assert branch.server.patron_requests() == 0


# -- unknown, blocked or unavailable ---------------------------------------------------

def test_a_card_the_library_system_does_not_know_is_unknown_and_nothing_is_cached(branch):
    result = branch.tap(NOBODY)

    assert (result.decision.granted, result.event.reason) == (False, "unknown_card")
    assert branch.store.events(limit=1)[0]["reason"] == "unknown_card"
    assert branch.cache_row(NOBODY) == {}


def test_the_library_systems_unknown_leaves_a_good_cache_entry_alone(branch):
    """A refusal must not overwrite what the central service said (a card number the
    server looks up differently, say): the entry stays for the next sync to settle."""
    before = branch.cache_row(CACHED_OK)
    branch.server.patrons = {}

    assert branch.tap(CACHED_OK).event.reason == "unknown_card"
    assert branch.cache_row(CACHED_OK) == before


@pytest.mark.parametrize("outage", ["down", "login_refused"])
def test_an_uncached_card_is_unavailable_when_the_library_system_cannot_answer(branch, outage):
    if outage == "down":
        branch.server.stop()
    else:
        branch.server.password = "changed-on-the-server"

    result = branch.tap(NOT_CACHED)

    assert (result.decision.granted, result.event.reason) == (False, "unavailable")
    assert "Yritä uudelleen tai ota yhteys henkilökuntaan" in result.event.detail["message"]
    assert branch.cache_row(NOT_CACHED) == {}


def test_an_uncached_card_is_unknown_when_a_full_snapshot_is_fresh_and_the_library_system_is_down(branch):
    now = datetime.now(timezone.utc)
    branch.store.begin_patron_snapshot()
    branch.store.stage_patrons([branch.cached(CACHED_OK)], source="central")
    branch.store.commit_patron_snapshot(stream="patrons", cursor="c1", at=now - timedelta(hours=1))
    branch.server.stop()

    assert branch.tap(NOT_CACHED).event.reason == "unknown_card"
    assert branch.tap(CACHED_OK).event.reason == "granted"


def test_a_refused_patron_class_has_its_own_reason_online_and_from_the_cache(branch):
    online = branch.tap(REFUSED_CLASS)

    assert (online.decision.granted, online.event.reason) == (False, "class_not_allowed")
    assert online.event.detail["message"] == "Asiakasryhmäsi ei voi käyttää omatoimikirjastoa. Ota yhteys henkilökuntaan"
    assert branch.cached(REFUSED_CLASS).class_refused

    branch.server.stop()
    assert branch.tap(REFUSED_CLASS).event.reason == "class_not_allowed"


# -- no patron waits for a dead server ---------------------------------------------------

def test_a_late_answer_refreshes_the_cache_after_the_tap_was_decided_from_it(branch):
    branch.server.faults = ["late"]

    first = branch.tap(BLOCKED_IN_SIP2)

    assert first.event.reason == "granted"  # the fresh cache entry decided, within the short budget
    deadline = time.monotonic() + 10
    while branch.cached(BLOCKED_IN_SIP2).blocked_reason is None and time.monotonic() < deadline:
        branch.settle(0.05)
    assert branch.cached(BLOCKED_IN_SIP2).blocked_reason == "charge_privileges_denied"
    assert branch.tap(BLOCKED_IN_SIP2).event.reason == "blocked"


def test_the_door_loop_answers_while_a_check_waits_for_the_library_system(tmp_path):
    branch = Branch(tmp_path, timeout=3.0)
    stop = threading.Event()
    loop = threading.Thread(target=branch.controller.run, args=(stop,), daemon=True)
    loop.start()
    try:
        branch.server.faults = ["slow"]
        branch.controller.submit_tap("entrance", NOT_CACHED)  # no cache entry: it waits for the whole check
        deadline = time.monotonic() + 5
        while branch.server.patron_requests() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)

        # Staff commands and door timers run on this loop: it answers while the check waits.
        assert branch.controller.call(lambda: "the loop is free", timeout=1.5) == "the loop is free"
        assert branch.decided == []
        deadline = time.monotonic() + 10
        while not branch.decided and time.monotonic() < deadline:
            time.sleep(0.05)
        assert branch.decided[0].event.reason == "unavailable"
    finally:
        stop.set()
        loop.join(5)
        branch.close()


# -- the device reports the library system as it meets it -----------------------------------

def test_the_device_reports_its_own_last_sip2_success_and_error(branch):
    branch.tap(CACHED_OK)
    branch.settle(1.2)  # the status is written at most once a second
    state = branch.store.status()["sip2"]["value"]
    assert state["breaker"] == "closed" and state["last_success"] and state["last_error"] is None

    branch.server.stop()
    branch.tap(CACHED_OK)
    branch.settle(1.2)
    state = branch.store.status()["sip2"]["value"]
    assert state["last_error"].startswith(f"cannot connect to 127.0.0.1:{branch.server.port}")
    assert state["last_error_at"] > state["last_success"]
    assert CACHED_OK not in json.dumps(state)


def test_a_config_from_before_the_profiles_were_renamed_still_loads(tmp_path):
    """``generic`` read PA as the expiry date, as ``evergreen`` does: an upgraded branch keeps its door."""
    path = tmp_path / "omaovi.toml"
    path.write_text(HEAD + SIP2.replace('profile = "koha-suomi"', 'profile = "generic"'))
    assert load_sections(path)[1].sip2.profile == "evergreen"
