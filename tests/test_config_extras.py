"""The door-extras sections of the config file: each problem names the file, the key and what is allowed."""

from datetime import timedelta

import pytest

from device.config import BuildingConfig, KeypadConfig, load
from tests.test_config import ENTRANCE, HEAD, PIN_RULE, problems_in, write

PIN = '\n[pin]\npepper_file = "pin.pepper"\n'
SERIAL_KEYPAD = '[doors.keypad]\ntype = "serial"\ndevice = "/dev/ttyUSB1"\n'
MATRIX_KEYPAD = '[doors.keypad]\ntype = "matrix"\nrow_pins = [4, 18, 16, 12]\ncolumn_pins = [20, 21, 26]\n'
PIN_KEYS = "enter_key, length, lockout, max_wrong, pepper_file, reset_key, self_service, staffed, timeout, wrong_window"


def test_every_section_is_read_with_its_defaults(tmp_path):
    cfg = load(write(tmp_path, HEAD + ENTRANCE + MATRIX_KEYPAD + PIN + "[building]\n[announcements]\n"))
    assert cfg.pin.pepper_file == tmp_path / "pin.pepper"
    assert (cfg.pin.length, cfg.pin.enter_key, cfg.pin.reset_key, cfg.pin.timeout) == (4, "#", "*", 5.0)
    assert (cfg.pin.max_wrong, cfg.pin.wrong_window, cfg.pin.lockout) == (5, timedelta(minutes=15), timedelta(minutes=30))
    assert cfg.pin.required_in("self_service") and not cfg.pin.required_in("staffed")
    assert cfg.doors[0].keypad == KeypadConfig(type="matrix", row_pins=(4, 18, 16, 12), column_pins=(20, 21, 26))
    assert cfg.building == BuildingConfig()
    assert (cfg.announcements.first_minutes, cfg.announcements.every_minutes) == (15, 5)


def test_a_branch_without_the_sections_has_none_of_the_extras(tmp_path):
    cfg = load(write(tmp_path, HEAD + ENTRANCE))
    assert cfg.pin is None and cfg.announcements is None
    assert cfg.building.lights_pin is None and cfg.building.alarm_pin is None


BAD = [
    pytest.param(
        HEAD + ENTRANCE + SERIAL_KEYPAD + PIN + 'length = 3\nenter_key = "5"\ntimeout = 1\nlockout = "forever"\nstafed = "none"\n',
        [
            "pin.length = 3: must be a whole number from 4 to 12",
            "pin.timeout = 1: must be a number from 2 to 60",
            'pin.lockout = "forever": must be a duration from "1m" to "7d", such as "15m"',
            'pin.enter_key = "5": must not be a digit: digits are the PIN',
            f'pin.stafed = "none": unknown key; allowed keys here: {PIN_KEYS}',
        ],
        id="pin-values",
    ),
    pytest.param(
        HEAD + ENTRANCE + SERIAL_KEYPAD + PIN + 'reset_key = "#"\nself_service = "pin"\n',
        ['pin.self_service = "pin": must be one of none, card_pin', 'pin.reset_key = "#": must differ from enter_key'],
        id="pin-keys",
    ),
    pytest.param(
        HEAD + ENTRANCE + PIN,
        ['pin = {…}: asks for a PIN, but no door has a [doors.keypad] to type it on'],
        id="pin-without-keypad",
    ),
    pytest.param(
        HEAD + ENTRANCE + MATRIX_KEYPAD.replace("[4, 18, 16, 12]", "[4, 17, 16]"),
        [
            'doors[0].keypad.keys = ["123", "456", "789", "*0#"]: must have 3 rows of 3 keys, one per row and column pin',
        ],
        id="keypad-keys-shape",
    ),
    pytest.param(
        HEAD + ENTRANCE + MATRIX_KEYPAD.replace("[4, 18, 16, 12]", "[4, 17, 16, 12]"),
        ["doors[0].keypad.row_pins[1] = 17: GPIO17 is already used by doors[0].lock_pin"],
        id="keypad-pin-clash",
    ),
    pytest.param(
        HEAD + ENTRANCE + '[doors.keypad]\ntype = "usb"\n',
        ['doors[0].keypad.type = "usb": must be one of matrix, serial'],
        id="keypad-type",
    ),
    pytest.param(
        HEAD + ENTRANCE + '[doors.display]\ntype = "ssd1306"\nlanguages = ["fi", "de"]\ni2c_address = 200\n',
        [
            'doors[0].display.languages = ["fi", "de"]: must be a list of one or more different languages from fi, sv, en',
            "doors[0].display.i2c_address = 200: must be a whole number from 3 to 119",
        ],
        id="display-values",
    ),
    pytest.param(
        HEAD + ENTRANCE + '[doors.display]\ntype = "http"\nurl = "ftp://screen"\n',
        ['doors[0].display.url = "ftp://screen": must be an http:// or https:// URL such as "http://127.0.0.1:8080/message"'],
        id="display-url",
    ),
    pytest.param(
        HEAD + ENTRANCE + "\n[building]\nalarm_pin = 30\nalarm_arm_after = -1\n",
        [f"building.alarm_pin = 30: {PIN_RULE}", "building.alarm_arm_after = -1: must be a whole number from 0 to 240"],
        id="building-values",
    ),
    pytest.param(
        HEAD + ENTRANCE + "\n[building]\nlights_pin = 17\n",
        ["doors[0].lock_pin = 17: GPIO17 is already used by building.lights_pin"],
        id="building-pin-clash",
    ),
    pytest.param(
        HEAD + ENTRANCE + "counter_in_pin = 30\ncounter_out_pin = 21\n",
        [f"doors[0].counter_in_pin = 30: {PIN_RULE}"],
        id="counter-pin",
    ),
    pytest.param(
        HEAD + '[[doors]]\nid = "booth-1"\nkind = "booth"\nresource = "r"\nlock_pin = 5\ncounter_in_pin = 20\ncounter_out_pin = 21\n',
        [
            "doors[0].counter_in_pin = 20: only an entrance has a people counter; a booth is inside the building",
            "doors[0].counter_out_pin = 21: only an entrance has a people counter; a booth is inside the building",
        ],
        id="counter-on-booth",
    ),
    pytest.param(
        HEAD + ENTRANCE + '\n[announcements]\nfirst_minutes = 0\nclosing = { de = "Wir schliessen" }\n',
        [
            "announcements.first_minutes = 0: must be a whole number from 1 to 120",
            'announcements.closing = {…}: must be a table of languages (fi, sv, en) to texts, such as { fi = "…" },'
            ' none beginning with a dash (-)',
        ],
        id="announcement-values",
    ),
    pytest.param(
        HEAD + ENTRANCE + '\n[announcements]\nself_service_starts = { fi = "Tervetuloa", sv = "  --phonout=/var/lib/omaovi/omaovi.db" }\n',
        [
            'announcements.self_service_starts = {…}: must be a table of languages (fi, sv, en) to texts, such as { fi = "…" },'
            ' none beginning with a dash (-)',
        ],
        id="announcement-text-like-an-option",
    ),
    pytest.param(
        HEAD + ENTRANCE.replace('"entrance"\nkind', '"building"\nkind'),
        ['doors[0].id = "building": \'building\' names the events of the building as a whole'],
        id="door-called-building",
    ),
]


@pytest.mark.parametrize("text, expected", BAD)
def test_a_bad_extras_section_names_file_key_value_and_what_is_allowed(tmp_path, text, expected):
    assert problems_in(write(tmp_path, text)) == expected


def test_a_counter_needs_both_inputs(tmp_path):
    assert problems_in(write(tmp_path, HEAD + ENTRANCE + "counter_in_pin = 20\n")) == [
        "doors[0].counter_in_pin = 20: a people counter needs both pulse inputs; add counter_out_pin"]
