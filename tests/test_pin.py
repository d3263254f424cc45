"""Card + PIN: a matrix keypad on mock pins, a serial keypad on a pty, SIP2 and the cached verifier."""

import json
import logging
import os
import threading
import time
from datetime import date, datetime, timedelta, timezone

import pytest
from gpiozero.pins.mock import MockConnectedPin, MockFactory

from device.cards import card_key
from device.config import BUILDING, Config, DoorConfig, KeypadConfig, PinConfig, Sip2Settings
from device.controller import Controller, sip2_checker
from device.keypad import MatrixPins
from device.pins import (
    LockoutRule, PinEntry, VerifierError, locked_until, make_verifier, pepper_verifier, pin_matches, remember_pin,
)
from device.policy import Patron
from device.schedule import Period
from device.store import Store
from tests.sip2_server import FakePatron, Sip2Peer
from tests.test_device_integration import wait_for

KEY = b"pin-test-consortium-key-00000000"
PEPPER = b"branch-pepper-for-the-pin-tests"
CARD, OTHER, NO_VERIFIER = "10000001", "10000003", "10000004"
PIN = "973175"
ROWS, COLUMNS = (5, 6, 13, 19), (12, 16, 20)
KEYS = ("123", "456", "789", "*0#")
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


# -- the pure parts ------------------------------------------------------------------

def test_a_stored_verifier_checks_the_pin_only_with_the_branch_pepper():
    stored = pepper_verifier(make_verifier(PIN, "s4lt", 10_000), PEPPER)
    assert PIN not in stored and stored.startswith("omaovi1$10000$s4lt$")
    assert pin_matches(PIN, stored, PEPPER)
    assert not pin_matches("973176", stored, PEPPER)
    assert not pin_matches(PIN, stored, b"another-branch-pepper-123")


@pytest.mark.parametrize("verifier", [
    "1234",
    "pbkdf2_sha1$10000$salt$" + "A" * 44,
    "pbkdf2_sha256$10$salt$" + make_verifier("1", "salt", 10_000).split("$")[3],  # too few rounds
    "pbkdf2_sha256$10000$salt$not base64!",
    "pbkdf2_sha256$10000$salt$QUJD",  # 3 bytes, not 32
    "pbkdf2_sha256$10000$$" + make_verifier("1", "salt", 10_000).split("$")[3],
])
def test_a_malformed_verifier_is_refused(verifier):
    with pytest.raises(VerifierError):
        pepper_verifier(verifier, PEPPER)


RULE = LockoutRule(max_wrong=5, window=timedelta(minutes=15), lockout=timedelta(minutes=30))


@pytest.mark.parametrize("minutes_ago, now_after, locked", [
    ([10, 8, 6, 4, 2], 0, 28),            # five within 15 minutes: locked 30 min from the last
    ([10, 8, 6, 4], 0, None),             # four are not enough
    ([20, 8, 6, 4, 2], 0, None),          # the first is outside the window
    ([14, 13, 12, 11, 0], 0, 30),         # exactly the window's edge still counts
    ([40, 39, 38, 37, 36], 0, None),      # locked once, and the 30 minutes are over
    ([40, 39, 38, 37, 36], -7, 1),        # ... but not yet seven minutes earlier
])
def test_the_lockout_rule(minutes_ago, now_after, locked):
    now = T0 + timedelta(minutes=now_after)
    failures = [T0 - timedelta(minutes=m) for m in minutes_ago]
    expected = None if locked is None else now + timedelta(minutes=locked)
    assert locked_until(failures, now, RULE) == expected


def test_pin_entry_completes_at_its_length_or_on_enter_and_the_reset_key_starts_over():
    entry = PinEntry(length=4, enter_key="#", reset_key="*")
    assert [entry.press(k) for k in "12*"] == [None, None, None]
    assert [entry.press(k) for k in "5678"] == [None, None, None, "5678"]
    assert entry.digits == [], "the entry keeps no digit of a finished PIN"
    short = PinEntry(length=4, enter_key="#", reset_key="*")
    assert [short.press(k) for k in "12#"] == [None, None, "12"]


# -- the door ---------------------------------------------------------------------

class PinDoor:
    """An entrance with a keypad asking card + PIN in self-service, and a booth without one."""

    def __init__(self, tmp_path, *, keypad: KeypadConfig, sip2=None, timeout=2.0, pin_length=6, max_wrong=5):
        self.factory = MockFactory()
        for row in ROWS:  # a pressed key connects its row to its column
            self.factory.pin(row, pin_class=MockConnectedPin)
        self.pepper_file = tmp_path / "pin.pepper"
        self.pepper_file.write_bytes(PEPPER + b"\n")
        self.config = Config(
            path=tmp_path / "omaovi.toml", branch="test", timezone="Europe/Helsinki",
            database=tmp_path / "omaovi.db", consortium_key_file=tmp_path / "key",
            doors=(
                DoorConfig(id="entrance", kind="entrance", lock_pin=17, contact_pin=27, buzzer_pin=24, keypad=keypad),
                DoorConfig(id="booth", kind="booth", resource="smartblock-1", lock_pin=4),
            ),
            pin=PinConfig(pepper_file=self.pepper_file, length=pin_length, timeout=timeout, max_wrong=max_wrong),
        )
        self.store = Store(self.config.database)
        self.store.set_weekly({d: (Period(0, 1440, "self_service"),) for d in range(7)})
        now = datetime.now(timezone.utc)
        fresh = dict(self_service=True, valid_until=date(2099, 1, 1), age_ok_from=date(2000, 1, 1), fetched_at=now)
        verifier = pepper_verifier(make_verifier(PIN, "s4lt", 10_000), PEPPER)
        self.store.put_patrons([
            Patron(card_key=card_key(KEY, CARD), pin_verifier=verifier, **fresh),
            Patron(card_key=card_key(KEY, OTHER), pin_verifier=verifier, **fresh),
            Patron(card_key=card_key(KEY, NO_VERIFIER), **fresh),
        ], source="test")
        self.controller = Controller(
            self.config, self.store, consortium_key=KEY, pin_factory=self.factory, start_readers=False, sip2=sip2,
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.controller.run, args=(self.stop,), daemon=True)
        self.thread.start()
        self.factory.pin(27).drive_low()
        #: What the staff page would see: a connection of its own, as the loop's is busy on its thread.
        self.reader = Store(self.config.database)

    def tap(self, number, door="entrance"):
        self.controller.submit_tap(door, number)

    def press(self, keys: str) -> None:
        """Press matrix keys one at a time, each held and then released for two scans of its row."""
        for key in keys:
            row = next(r for r, line in enumerate(KEYS) if key in line)
            column = self.factory.pin(COLUMNS[KEYS[row].index(key)])
            row_pin = self.factory.pin(ROWS[row])
            self._two_scans(row_pin, lambda: setattr(row_pin, "input_pin", column))
            self._two_scans(row_pin, lambda: (setattr(row_pin, "input_pin", None), column.drive_high()))

    @staticmethod
    def _two_scans(row_pin, change) -> None:
        seen = len(row_pin.states)
        change()
        wait_for(lambda: len(row_pin.states) >= seen + 4, what="the keypad to scan the row")  # on, off, on, off

    def unlocked(self, door="entrance"):
        return self.factory.pin(self.config.door(door).lock_pin).state

    def taps(self):
        return [e for e in reversed(self.reader.events(limit=1000)) if e["type"] == "tap"]

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.controller.close()
        self.store.close()
        self.reader.close()


def lockouts_shown(door: PinDoor) -> list:
    """What the staff page would list as locked-out cards now."""
    return door.reader.status().get("pin_lockouts", {}).get("value", [])


MATRIX = KeypadConfig(type="matrix", row_pins=ROWS, column_pins=COLUMNS, keys=KEYS)


@pytest.fixture
def door(tmp_path):
    d = PinDoor(tmp_path, keypad=MATRIX)
    yield d
    d.close()


def test_the_right_pin_on_the_matrix_keypad_opens_the_door(door, caplog):
    caplog.set_level(logging.DEBUG)
    door.tap(CARD)
    time.sleep(0.3)
    assert not door.unlocked() and door.taps() == [], "the card alone does not open and is not decided yet"
    door.press(PIN)
    wait_for(door.unlocked, what="the door to open after the PIN")
    [tap] = door.taps()
    assert tap["reason"] == "granted" and '"pin": "ok"' in tap["detail"]
    raw = door.config.database.read_bytes() + b"".join(
        p.read_bytes() for p in door.config.database.parent.glob("omaovi.db-*"))
    assert PIN.encode() not in raw and CARD.encode() not in raw
    assert PIN not in caplog.text and CARD not in caplog.text


def test_a_wrong_pin_is_refused(door):
    door.tap(CARD)
    time.sleep(0.2)
    door.press("111111")
    wait_for(door.taps, what="the decision")
    assert [(t["reason"], '"pin": "wrong"' in t["detail"]) for t in door.taps()] == [("wrong_pin", True)]
    assert not door.unlocked()


def test_the_reset_key_clears_a_mistyped_pin(door):
    door.tap(CARD)
    time.sleep(0.2)
    door.press("12*" + PIN)
    wait_for(door.unlocked, what="the door to open")


def test_no_pin_in_time_is_a_timeout_and_the_other_doors_work_meanwhile(door):
    door.tap(CARD)
    time.sleep(0.3)
    door.reader.add_command("booth", "pulse", "maija")
    wait_for(lambda: door.unlocked("booth"), timeout=1.5, what="the booth to open while the entrance waits")
    assert door.taps() == []
    wait_for(door.taps, timeout=4, what="the PIN timeout")
    assert door.taps()[0]["reason"] == "pin_timeout"
    assert not door.unlocked()
    door.press(PIN)  # too late: no tap is waiting any more
    time.sleep(0.3)
    assert not door.unlocked() and len(door.taps()) == 1


def test_the_same_card_tapped_again_starts_its_pin_over_and_another_card_ends_the_first_wait(door):
    door.tap(CARD)
    time.sleep(0.2)
    door.press("97")
    door.tap(CARD)
    time.sleep(0.2)
    door.press(PIN)
    wait_for(door.unlocked, what="the PIN typed after the second tap")
    assert [t["reason"] for t in door.taps()] == ["granted"]
    door.tap(OTHER)
    time.sleep(0.2)
    door.tap(CARD)
    wait_for(lambda: len(door.taps()) == 2, what="the first wait to end")
    assert [(t["reason"], t["card_key"]) for t in door.taps()][1:] == [("pin_timeout", card_key(KEY, OTHER))]


def test_a_card_without_a_verifier_is_unavailable_when_the_pin_cannot_be_checked(door):
    door.tap(NO_VERIFIER)
    time.sleep(0.2)
    door.press(PIN)
    wait_for(door.taps, what="the decision")
    assert door.taps()[0]["reason"] == "unavailable" and not door.unlocked()


def test_five_wrong_pins_lock_the_card_out_on_a_serial_keypad(tmp_path):
    master, slave = os.openpty()
    d = PinDoor(tmp_path, keypad=KeypadConfig(type="serial", device=os.ttyname(slave)))
    try:
        for attempt in range(1, 6):
            d.tap(CARD)
            time.sleep(0.2)
            os.write(master, b"000000")
            wait_for(lambda: len(d.taps()) == attempt, what=f"wrong PIN {attempt}")
        wait_for(lambda: lockouts_shown(d), what="the lockout status")  # written after the lockout event
        lockouts = [e for e in d.reader.events(limit=100) if e["type"] == "pin_lockout"]
        assert len(lockouts) == 1 and lockouts[0]["card_key"] == card_key(KEY, CARD)
        [shown] = lockouts_shown(d)
        assert shown["card_key"] == card_key(KEY, CARD)

        d.tap(CARD)  # locked out: refused at once, no PIN asked, even the right one later
        wait_for(lambda: len(d.taps()) == 6, what="the locked-out tap")
        assert '"pin": "locked_out"' in d.taps()[-1]["detail"]
        assert json.loads(d.taps()[-1]["detail"])["message"] == "PIN-koodi lukittu. Yritä myöhemmin"
        os.write(master, PIN.encode() + b"\r")
        time.sleep(0.3)
        assert not d.unlocked()

        d.tap(OTHER)  # another card is not affected
        time.sleep(0.2)
        os.write(master, PIN.encode())
        wait_for(d.unlocked, what="another card to open with its PIN")
        counts = d.reader.counts(T0 - timedelta(days=1), datetime.now(timezone.utc) + timedelta(hours=2))
        assert sum(r["count"] for r in counts if r["metric"] == "pin_lockout") == 1
    finally:
        d.close()
        os.close(master)
        os.close(slave)


def enter(door: PinDoor, pin: str) -> None:
    """CARD tapped and ``pin`` typed on the matrix keypad."""
    door.tap(CARD)
    time.sleep(0.2)
    door.press(pin)


def locked_out(tmp_path) -> PinDoor:
    """A door that locks a card out after one wrong PIN, with CARD locked out."""
    d = PinDoor(tmp_path, keypad=MATRIX, max_wrong=1)
    try:
        enter(d, "111111")
        wait_for(lambda: lockouts_shown(d), what="the lockout")
    except BaseException:
        d.close()
        raise
    return d


def test_a_lockout_survives_a_restart(tmp_path):
    locked_out(tmp_path).close()
    again = PinDoor(tmp_path, keypad=MATRIX, max_wrong=1)
    try:
        assert [item["card_key"] for item in lockouts_shown(again)] == [card_key(KEY, CARD)]
        again.tap(CARD)
        wait_for(lambda: len(again.taps()) == 2, what="the tap after the restart")
        assert again.taps()[-1]["reason"] == "wrong_pin" and '"locked_out"' in again.taps()[-1]["detail"]
    finally:
        again.close()


def test_staff_clearing_a_lockout_lets_the_right_pin_open_and_the_clearing_survives_a_restart(tmp_path):
    d = locked_out(tmp_path)
    try:
        d.reader.add_command(BUILDING, "clear_pin_lockout", "maija", card_key=card_key(KEY, CARD))
        wait_for(lambda: lockouts_shown(d) == [], what="the lockout to be cleared on the staff page")
        [cleared] = [e for e in d.reader.events(limit=100) if e["type"] == "pin_lockout_cleared"]
        assert cleared["card_key"] == card_key(KEY, CARD) and json.loads(cleared["detail"])["by"] == "maija"
        enter(d, PIN)
        wait_for(d.unlocked, what="the right PIN to open once the lockout is cleared")
    finally:
        d.close()
    again = PinDoor(tmp_path, keypad=MATRIX, max_wrong=1)
    try:
        assert lockouts_shown(again) == [], "the wrong PIN before the clearing is not counted again"
        enter(again, PIN)
        wait_for(again.unlocked, what="the right PIN to open after the restart")
        enter(again, "111111")  # a wrong PIN after the clearing counts as ever
        wait_for(lambda: lockouts_shown(again), what="a new lockout")
    finally:
        again.close()


def test_the_library_system_checks_the_pin_when_it_answers(tmp_path):
    server = Sip2Peer({CARD: FakePatron(pin="246810", extra={"PA": "0"}), OTHER: FakePatron(extra={"PA": "0"})})
    password_file = tmp_path / "sip2.password"
    password_file.write_text("salasana-123\n")
    checker = sip2_checker(Sip2Settings(
        host="127.0.0.1", port=server.port, username="ovi", password_file=password_file,
        institution="KIRJASTO", profile="koha-suomi", timeout=1.0,
    ))
    d = PinDoor(tmp_path, keypad=MATRIX, sip2=checker)
    try:
        d.tap(CARD)
        time.sleep(0.3)
        d.press(PIN)  # right by the cached verifier, wrong by the library system, which wins
        wait_for(d.taps, what="the decision")
        assert d.taps()[0]["reason"] == "wrong_pin"
        d.tap(CARD)
        time.sleep(0.3)
        d.press("246810")
        wait_for(d.unlocked, what="the library system's PIN to open")
        assert any(getattr(r, "patron_password", None) == "246810" for r in server.requests)
        server.stop()  # offline: the cached verifier decides
        d.tap(OTHER)
        time.sleep(0.3)
        d.press(PIN)
        wait_for(lambda: len(d.taps()) == 3, timeout=4, what="the offline decision")
        assert d.taps()[-1]["reason"] == "granted"
    finally:
        d.close()
        checker.close()
        server.stop()


class PluggedKeypad:
    """A serial keypad at a fixed path, as udev names one: a link to a pty that can be plugged in and pulled out."""

    def __init__(self, path):
        self.path = path
        self.master = self.slave = None

    def plug_in(self) -> None:
        self.master, self.slave = os.openpty()
        self.path.symlink_to(os.ttyname(self.slave))

    def pull_out(self) -> None:
        self.path.unlink()
        os.close(self.master)
        os.close(self.slave)
        self.master = self.slave = None

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())


def keypad_works(door: PinDoor):
    """What the staff page reads of the keypad: None until the device has said."""
    shown = door.reader.status().get("keypad:entrance")
    return None if shown is None else shown["value"]["works"]


def keypad_events(door: PinDoor) -> list[str]:
    return [e["type"] for e in reversed(door.reader.events(limit=1000)) if e["type"].startswith("keypad_")]


def test_a_serial_keypad_missing_at_start_or_pulled_out_leaves_its_door_opening_by_card_alone(tmp_path, caplog):
    keypad = PluggedKeypad(tmp_path / "ttyUSB-keypad")
    d = PinDoor(tmp_path, keypad=KeypadConfig(type="serial", device=str(keypad.path)))
    try:
        wait_for(lambda: keypad_works(d) is False, what="the missing keypad on the staff page")
        assert "cannot use the keypad of door entrance" in caplog.text
        assert "opens by card alone, without a PIN" in caplog.text
        d.tap(CARD)
        wait_for(d.taps, what="the card alone to be decided")
        assert d.taps()[-1]["reason"] == "granted" and d.unlocked(), "nobody waits for a PIN that cannot be typed"

        keypad.plug_in()
        wait_for(lambda: keypad_works(d), what="the keypad to be found when it is plugged in")
        d.tap(OTHER)
        time.sleep(0.3)
        assert len(d.taps()) == 1, "with the keypad back, the card alone does not open"
        keypad.type(PIN)
        wait_for(lambda: len(d.taps()) == 2, what="the PIN typed on the keypad that came back")
        assert d.taps()[-1]["reason"] == "granted" and '"pin": "ok"' in d.taps()[-1]["detail"]

        d.tap(CARD)
        time.sleep(0.3)
        keypad.type("97")
        keypad.pull_out()  # while the patron is typing
        wait_for(lambda: len(d.taps()) == 3, what="the patron typing to be let in by card alone")
        assert d.taps()[-1]["reason"] == "granted" and '"pin": "no_keypad"' in d.taps()[-1]["detail"]
        wait_for(lambda: keypad_works(d) is False, what="the pulled-out keypad on the staff page")
        d.tap(OTHER)
        wait_for(lambda: len(d.taps()) == 4, what="the next card alone to be decided")
        assert d.taps()[-1]["reason"] == "granted" and "pin" not in json.loads(d.taps()[-1]["detail"])
        assert keypad_events(d) == ["keypad_offline", "keypad_online", "keypad_offline"]
    finally:
        d.close()
        if keypad.master is not None:
            keypad.pull_out()


def test_a_matrix_keypad_that_cannot_be_claimed_leaves_the_door_opening_by_card_alone_until_it_can(tmp_path, caplog):
    from gpiozero import OutputDevice

    factory = MockFactory()
    blocker = OutputDevice(ROWS[2], pin_factory=factory)  # another program holds a row pin
    config = Config(
        path=tmp_path / "omaovi.toml", branch="test", timezone="Europe/Helsinki",
        database=tmp_path / "omaovi.db", consortium_key_file=tmp_path / "key",
        doors=(DoorConfig(id="entrance", kind="entrance", lock_pin=17, keypad=MATRIX),),
        pin=PinConfig(pepper_file=tmp_path / "unused"),
    )
    store = Store(config.database)
    store.set_weekly({d: (Period(0, 1440, "self_service"),) for d in range(7)})
    store.put_patrons([Patron(card_key=card_key(KEY, CARD), self_service=True, age_ok_from=date(2000, 1, 1),
                              fetched_at=datetime.now(timezone.utc))], source="test")
    controller = Controller(config, store, consortium_key=KEY, pin_factory=factory, start_readers=False, pepper=PEPPER)
    try:
        controller.step()
        assert "cannot use the keypad of door entrance" in caplog.text
        assert controller.tap("entrance", CARD).decision.granted
        assert factory.pin(17).state
        blocker.close()

        def keypad_claimed():
            controller.step()
            return store.status()["keypad:entrance"]["value"]["works"]

        wait_for(keypad_claimed, what="the keypad to be claimed once the pin is free")
        assert controller.tap("entrance", CARD) is None, "the card now waits for its PIN"
    finally:
        controller.close()
        store.close()
        blocker.close()


def test_matrix_pins_that_cannot_all_be_claimed_release_those_claimed():
    from gpiozero import GPIOPinInUse, OutputDevice

    factory = MockFactory()
    blocker = OutputDevice(ROWS[2], pin_factory=factory)
    try:
        with pytest.raises(GPIOPinInUse):
            MatrixPins(MATRIX, pin_factory=factory)
        OutputDevice(ROWS[0], pin_factory=factory).close()
    finally:
        blocker.close()


# -- card + PIN while the library system is down -----------------------------------------

LIBRARY_PIN = "246810"


@pytest.fixture
def sip2_pin_door(tmp_path):
    """A door asking card + PIN, with a library system that knows NO_VERIFIER's PIN (the
    central service sent no verifier for it)."""
    server = Sip2Peer({NO_VERIFIER: FakePatron(pin=LIBRARY_PIN, extra={"PA": "0"})})
    password_file = tmp_path / "sip2.password"
    password_file.write_text("salasana-123\n")
    checker = sip2_checker(Sip2Settings(
        host="127.0.0.1", port=server.port, username="ovi", password_file=password_file,
        institution="KIRJASTO", profile="koha-suomi", timeout=1.0, breaker_failures=1,
    ))
    d = PinDoor(tmp_path, keypad=MATRIX, sip2=checker)
    d.server = server
    yield d
    d.close()
    checker.close()
    server.stop()


def enter_pin(d: PinDoor, number: str, pin: str, decisions: int) -> str:
    d.tap(number)
    time.sleep(0.3)
    d.press(pin)
    wait_for(lambda: len(d.taps()) == decisions, timeout=5, what="the decision")
    return d.taps()[-1]["reason"]


def kept(d: PinDoor, number: str) -> str | None:
    return d.reader.sip2_pin_verifier(card_key(KEY, number), since=datetime.now(timezone.utc) - timedelta(days=3))


def test_a_pin_the_library_system_accepted_opens_the_door_during_its_outage(sip2_pin_door):
    d = sip2_pin_door
    assert enter_pin(d, NO_VERIFIER, LIBRARY_PIN, 1) == "granted"
    wait_for(lambda: kept(d, NO_VERIFIER), what="the verifier to be kept")
    assert LIBRARY_PIN not in kept(d, NO_VERIFIER)

    d.server.stop()
    assert enter_pin(d, NO_VERIFIER, LIBRARY_PIN, 2) == "granted"
    assert enter_pin(d, NO_VERIFIER, "111111", 3) == "wrong_pin"


def test_the_kept_pin_is_forgotten_when_the_library_system_says_it_is_wrong(sip2_pin_door):
    d = sip2_pin_door
    assert enter_pin(d, NO_VERIFIER, LIBRARY_PIN, 1) == "granted"
    wait_for(lambda: kept(d, NO_VERIFIER), what="the verifier to be kept")

    d.server.patrons[NO_VERIFIER].pin = "135790"  # the patron changed the PIN in the library system
    assert enter_pin(d, NO_VERIFIER, LIBRARY_PIN, 2) == "wrong_pin"
    wait_for(lambda: kept(d, NO_VERIFIER) is None, what="the verifier to be forgotten")

    d.server.stop()
    assert enter_pin(d, NO_VERIFIER, LIBRARY_PIN, 3) == "unavailable"


def test_a_kept_pin_older_than_max_offline_age_is_not_used(sip2_pin_door):
    d = sip2_pin_door
    old = datetime.now(timezone.utc) - d.config.policy.max_offline_age - timedelta(minutes=1)
    d.store.keep_sip2_pin_verifier(card_key(KEY, NO_VERIFIER), remember_pin(LIBRARY_PIN, PEPPER, 10_000), old)
    d.server.stop()

    assert enter_pin(d, NO_VERIFIER, LIBRARY_PIN, 1) == "unavailable"
