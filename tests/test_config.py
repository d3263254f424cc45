"""The branch configuration file, as the person installing a branch meets it.

Every problem is one line: ``{file}: {key} = {value}: {what is allowed}``. The cases
below compare whole lines, so each one checks that the file, the key path, the bad
value and the allowed values are all named.
"""

import copy
import dataclasses
import math
import re
import tomllib
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest

from device.cli import main
from device.config import (
    AnnouncementConfig, BuildingConfig, Config, ConfigError, DisplayConfig, DoorConfig, KeypadConfig, PinConfig,
    PolicyConfig, ReaderConfig, WebConfig, load, parse,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "omaovi.toml"
DOCS = REPO / "docs" / "configuration.md"

HEAD = """\
branch = "kallio"
database = "omaovi.db"
consortium_key_file = "consortium.key"
"""

ENTRANCE = """
[[doors]]
id = "entrance"
kind = "entrance"
lock_pin = 17
"""

BOOTH = """
[[doors]]
id = "booth-1"
kind = "booth"
resource = "smartblock-1"
lock_pin = 5
"""

ID_RULE = "must be 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
PIN_RULE = "must be a whole number from 0 to 27"
DURATION_RULE = 'must be a duration from "5m" to "90d", such as "72h"'
TIMEZONE_RULE = "must be an IANA time zone name such as Europe/Helsinki"
ENTRANCE_KEYS = (
    "buzzer_pin, contact_pin, counter_in_pin, counter_out_pin, display, exit_button_pin, held_open_seconds, "
    "id, keypad, kind, led_pin, lock_active_high, lock_pin, name, reader, unlock_seconds"
)


def write(directory: Path, text: str | bytes, name: str = "omaovi.toml") -> Path:
    path = directory / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def problems_in(path: Path) -> list[str]:
    """The problem lines load() reports, each checked to start with the file's name."""
    with pytest.raises(ConfigError) as caught:
        load(path)
    prefix = f"{path}: "
    lines = str(caught.value).splitlines()
    assert all(line.startswith(prefix) for line in lines), lines
    assert len(lines) == len(caught.value.problems)
    return [line.removeprefix(prefix) for line in lines]


BAD_CONFIGS = [
    # A required key is missing.
    pytest.param(HEAD.replace('branch = "kallio"\n', "") + ENTRANCE, [f"branch = (missing): required; {ID_RULE}"], id="missing-branch"),
    pytest.param(
        HEAD + ENTRANCE.replace("lock_pin = 17\n", ""),
        [f"doors[0].lock_pin = (missing): required; {PIN_RULE}"],
        id="missing-lock-pin",
    ),
    pytest.param(HEAD, ["doors = (missing): at least one [[doors]] table is required"], id="missing-doors"),
    pytest.param(
        HEAD + ENTRANCE + '[doors.reader]\ntype = "serial"\n',
        ["doors[0].reader.device = (missing): required; must be a non-empty string"],
        id="serial-reader-without-device",
    ),
    # A value of the wrong type.
    pytest.param(HEAD + ENTRANCE.replace("= 17", '= "17"'), [f'doors[0].lock_pin = "17": {PIN_RULE}'], id="pin-as-string"),
    pytest.param(HEAD + ENTRANCE.replace("= 17", "= true"), [f"doors[0].lock_pin = true: {PIN_RULE}"], id="pin-as-boolean"),
    pytest.param(HEAD + ENTRANCE.replace("= 17", "= 17.0"), [f"doors[0].lock_pin = 17.0: {PIN_RULE}"], id="pin-as-float"),
    pytest.param(
        HEAD + ENTRANCE + "contact_pin = 1979-05-27\n", [f"doors[0].contact_pin = 1979-05-27: {PIN_RULE}"], id="pin-as-date"
    ),
    pytest.param(
        HEAD + ENTRANCE + "unlock_seconds = true\n",
        ["doors[0].unlock_seconds = true: must be a number from 1 to 60"],
        id="seconds-as-boolean",
    ),
    pytest.param(
        HEAD + ENTRANCE + 'lock_active_high = "no"\n',
        ['doors[0].lock_active_high = "no": must be true or false'],
        id="boolean-as-string",
    ),
    pytest.param(
        HEAD + ENTRANCE + '[doors.reader]\ntype = "serial"\ndevice = "/dev/ttyUSB0"\nbaudrate = 9600.0\n',
        ["doors[0].reader.baudrate = 9600.0: must be one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200"],
        id="baudrate-as-float",
    ),
    pytest.param(HEAD + ENTRANCE + "name = 5\n", ["doors[0].name = 5: must be a string"], id="name-as-number"),
    pytest.param(
        HEAD.replace('"omaovi.db"', "5") + ENTRANCE,
        ["database = 5: must be a file path (relative paths are relative to this file)"],
        id="path-as-number",
    ),
    pytest.param(HEAD + "cards = 5\n" + ENTRANCE, ["cards = 5: must be a table"], id="cards-not-a-table"),
    pytest.param(HEAD + ENTRANCE + 'reader = "rc522"\n', ['doors[0].reader = "rc522": must be a table'], id="reader-not-a-table"),
    pytest.param(HEAD + "doors = [1]\n", ["doors[0] = 1: must be a table ([[doors]])"], id="door-not-a-table"),
    pytest.param(HEAD + 'doors = "x"\n', ['doors = "x": must be one or more [[doors]] tables'], id="doors-not-a-list"),
    pytest.param(HEAD + "doors = []\n", ["doors = []: must be one or more [[doors]] tables"], id="empty-doors"),
    # A number out of range.
    pytest.param(HEAD + ENTRANCE.replace("= 17", "= 28"), [f"doors[0].lock_pin = 28: {PIN_RULE}"], id="pin-above-27"),
    pytest.param(
        HEAD + ENTRANCE + "held_open_seconds = 7200\n",
        ["doors[0].held_open_seconds = 7200: must be a number from 5 to 3600"],
        id="held-open-too-long",
    ),
    pytest.param(
        HEAD + ENTRANCE + "unlock_seconds = nan\n", ["doors[0].unlock_seconds = nan: must be a number from 1 to 60"], id="seconds-nan"
    ),
    pytest.param(
        HEAD + ENTRANCE + '[doors.reader]\ntype = "mfrc522"\npoll_interval = 1\n',
        ["doors[0].reader.poll_interval = 1: must be a number from 0.1 to 0.2"],
        id="poll-interval",
    ),
    pytest.param(
        HEAD + ENTRANCE + "[policy]\nevent_retention_days = 0\n",
        ["policy.event_retention_days = 0: must be a whole number from 1 to 3650"],
        id="retention-zero",
    ),
    pytest.param(
        HEAD + ENTRANCE + "[policy]\nrepeat_tap_minutes = 241\n",
        ["policy.repeat_tap_minutes = 241: must be a whole number from 0 to 240"],
        id="repeat-tap-window-too-long",
    ),
    pytest.param(
        HEAD + ENTRANCE + "[web]\nworkers = 0\n",
        ["web.workers = 0: must be a whole number from 1 to 8"],
        id="web-workers-zero",
    ),
    # A value that is not one of the allowed words.
    pytest.param(
        HEAD + ENTRANCE.replace('"entrance"\nlock', '"door"\nlock'),
        ['doors[0].kind = "door": must be one of entrance, booth'],
        id="door-kind",
    ),
    pytest.param(
        HEAD + ENTRANCE + '[doors.reader]\ntype = "rc522"\n',
        ['doors[0].reader.type = "rc522": must be one of mfrc522, serial, evdev, stdin'],
        id="reader-type",
    ),
    pytest.param(
        HEAD + ENTRANCE + '[doors.reader]\ntype = "serial"\ndevice = "/dev/ttyUSB0"\nframing = "wiegand"\n',
        ['doors[0].reader.framing = "wiegand": must be one of line, rdm6300'],
        id="framing",
    ),
    pytest.param(
        HEAD + '[cards]\nuid_format = "HEX"\n' + ENTRANCE,
        ['cards.uid_format = "HEX": must be one of hex, decimal, decimal_reversed'],
        id="uid-format",
    ),
    pytest.param(
        HEAD + ENTRANCE + '[policy]\nstaffed_entrance = "open"\n',
        ['policy.staffed_entrance = "open": must be one of card, unlocked'],
        id="staffed-entrance",
    ),
    pytest.param(HEAD.replace('"kallio"', '"Kallio"') + ENTRANCE, [f'branch = "Kallio": {ID_RULE}'], id="branch-uppercase"),
    # A value with a line break is still reported on one line.
    pytest.param(HEAD.replace('"kallio"', '"kal\\nlio"') + ENTRANCE, [f'branch = "kal\\nlio": {ID_RULE}'], id="value-with-newline"),
    # An unknown or misspelt key, with the keys allowed in its place.
    pytest.param(
        HEAD + 'timezon = "Europe/Helsinki"\n' + ENTRANCE,
        ['timezon = "Europe/Helsinki": unknown key; allowed keys here: branch, cards, consortium_key_file, database, doors, policy, timezone, web'],
        id="misspelt-top-level-key",
    ),
    pytest.param(
        HEAD + ENTRANCE.replace("lock_pin", "lock_pn"),
        [f"doors[0].lock_pin = (missing): required; {PIN_RULE}", f"doors[0].lock_pn = 17: unknown key; allowed keys here: {ENTRANCE_KEYS}"],
        id="misspelt-door-key",
    ),
    pytest.param(
        HEAD + ENTRANCE + '[doors.reader]\ntype = "serial"\ndevice = "/dev/ttyUSB0"\nbaud = 9600\n',
        ["doors[0].reader.baud = 9600: unknown key; allowed keys here: baudrate, dedupe_seconds, device, framing, type"],
        id="misspelt-reader-key",
    ),
    pytest.param(
        HEAD + ENTRANCE + '[policy]\nmax_offline = "72h"\n',
        ['policy.max_offline = "72h": unknown key; allowed keys here: '
         "booth_early_minutes, event_retention_days, max_offline_age, no_show_minutes, repeat_tap_minutes, staffed_entrance"],
        id="misspelt-policy-key",
    ),
    # Booths and resources.
    pytest.param(
        HEAD + BOOTH.replace('resource = "smartblock-1"\n', ""),
        ["doors[0].resource = (missing): required; must be a non-empty string"],
        id="booth-without-resource",
    ),
    pytest.param(
        HEAD + ENTRANCE + 'resource = "smartblock-1"\n',
        ['doors[0].resource = "smartblock-1": only a booth has a resource; remove it or set kind = "booth"'],
        id="resource-on-entrance",
    ),
    # What doors may not share.
    pytest.param(
        HEAD + ENTRANCE + ENTRANCE.replace("= 17", "= 18"),
        ['doors[1].id = "entrance": must be unique; doors[0] has the same id'],
        id="duplicate-door-id",
    ),
    pytest.param(
        HEAD + ENTRANCE + BOOTH.replace("= 5", "= 17"),
        ["doors[1].lock_pin = 17: GPIO17 is already used by doors[0].lock_pin"],
        id="two-doors-one-lock-pin",
    ),
    pytest.param(
        HEAD + ENTRANCE + "contact_pin = 17\n",
        ["doors[0].contact_pin = 17: GPIO17 is already used by doors[0].lock_pin"],
        id="one-door-one-pin-twice",
    ),
    pytest.param(
        # The RC522's reset pin collides even when left at its default, GPIO25.
        HEAD + ENTRANCE + "led_pin = 25\n" + BOOTH + '[doors.reader]\ntype = "mfrc522"\n',
        ["doors[1].reader.reset_pin = 25: GPIO25 is already used by doors[0].led_pin"],
        id="reset-pin-collides",
    ),
    pytest.param(
        HEAD + ENTRANCE + '[doors.reader]\ntype = "serial"\ndevice = "/dev/ttyUSB0"\n'
        + BOOTH + '[doors.reader]\ntype = "serial"\ndevice = "/dev/ttyUSB0"\n',
        ['doors[1].reader = "/dev/ttyUSB0": already the reader of doors[0]; each door needs its own reader'],
        id="two-doors-one-serial-reader",
    ),
    pytest.param(
        HEAD + ENTRANCE + '[doors.reader]\ntype = "mfrc522"\n' + BOOTH + '[doors.reader]\ntype = "mfrc522"\nreset_pin = 24\n',
        ['doors[1].reader = "spi0.0": already the reader of doors[0]; each door needs its own reader'],
        id="two-doors-one-rc522",
    ),
    # Time zones and durations.
    pytest.param(HEAD + 'timezone = "Helsinki"\n' + ENTRANCE, [f'timezone = "Helsinki": {TIMEZONE_RULE}'], id="timezone-unknown"),
    pytest.param(HEAD + 'timezone = "Europe"\n' + ENTRANCE, [f'timezone = "Europe": {TIMEZONE_RULE}'], id="timezone-is-a-region"),
    pytest.param(HEAD + "timezone = 2\n" + ENTRANCE, [f"timezone = 2: {TIMEZONE_RULE}"], id="timezone-as-number"),
    pytest.param(
        HEAD + ENTRANCE + '[policy]\nmax_offline_age = "3 days"\n',
        [f'policy.max_offline_age = "3 days": {DURATION_RULE}'],
        id="duration-in-words",
    ),
    pytest.param(
        HEAD + ENTRANCE + "[policy]\nmax_offline_age = 72\n", [f"policy.max_offline_age = 72: {DURATION_RULE}"], id="duration-without-unit"
    ),
    pytest.param(
        HEAD + ENTRANCE + '[policy]\nmax_offline_age = "4m"\n', [f'policy.max_offline_age = "4m": {DURATION_RULE}'], id="duration-too-short"
    ),
    pytest.param(
        HEAD + ENTRANCE + '[policy]\nmax_offline_age = "99999999999999999999d"\n',
        [f'policy.max_offline_age = "99999999999999999999d": {DURATION_RULE}'],
        id="duration-overflowing",
    ),
]


@pytest.mark.parametrize("text, expected", BAD_CONFIGS)
def test_a_bad_config_names_file_key_value_and_what_is_allowed(tmp_path, text, expected):
    assert problems_in(write(tmp_path, text)) == expected


def test_every_problem_in_a_file_is_reported_at_once(tmp_path):
    text = (
        HEAD.replace('branch = "kallio"\n', "")
        + '[cards]\nuid_format = "dec"\n'
        + '[policy]\nbooth_early_minutes = 90\n'
        + ENTRANCE.replace("= 17", "= 30")
        + BOOTH.replace('resource = "smartblock-1"\n', "")
        + '[doors.reader]\ntype = "usb"\n'
    )
    assert problems_in(write(tmp_path, text)) == [
        f"branch = (missing): required; {ID_RULE}",
        'cards.uid_format = "dec": must be one of hex, decimal, decimal_reversed',
        "policy.booth_early_minutes = 90: must be a whole number from 0 to 60",
        f"doors[0].lock_pin = 30: {PIN_RULE}",
        "doors[1].resource = (missing): required; must be a non-empty string",
        'doors[1].reader.type = "usb": must be one of mfrc522, serial, evdev, stdin',
    ]


def test_a_toml_syntax_error_names_the_line(tmp_path):
    good_part = HEAD + ENTRANCE
    path = write(tmp_path, good_part + "unlock_seconds = 5 s\n")
    [line] = problems_in(path)
    assert line.startswith("(syntax) = ") and line.endswith(": the file must be valid TOML")
    assert f"line {good_part.count(chr(10)) + 1}," in line


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    raw = (HEAD + ENTRANCE + 'name = "Seinäjoki"\n').encode("latin-1")
    bad_byte = raw.index("ä".encode("latin-1"))
    assert problems_in(write(tmp_path, raw)) == [f'(file) = "byte {bad_byte}": the file must be UTF-8 text']


def test_a_missing_file_is_named(tmp_path):
    path = tmp_path / "omaovi.toml"
    assert problems_in(path) == [f'(file) = "{path}": file not found']


def test_a_utf8_file_with_a_byte_order_mark_loads(tmp_path):
    cfg = load(write(tmp_path, b"\xef\xbb\xbf" + (HEAD + ENTRANCE).encode()))
    assert cfg.branch == "kallio"


def test_relative_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    monkeypatch.chdir(tmp_path)  # somewhere else than the file's directory
    text = HEAD.replace('"omaovi.db"', '"data/omaovi.db"').replace('"consortium.key"', '"/etc/omaovi/consortium.key"') + ENTRANCE
    cfg = load(write(config_dir, text))
    assert cfg.database == config_dir / "data" / "omaovi.db"
    assert cfg.consortium_key_file == Path("/etc/omaovi/consortium.key")


def test_defaults_fill_in_what_the_file_leaves_out(tmp_path):
    text = (
        HEAD + ENTRANCE + '[doors.reader]\ntype = "mfrc522"\n'
        + BOOTH + '[doors.reader]\ntype = "serial"\ndevice = "/dev/ttyACM0"\n'
    )
    cfg = load(write(tmp_path, text))
    assert (cfg.timezone, cfg.uid_format) == ("Europe/Helsinki", "hex")
    assert cfg.policy == PolicyConfig(
        staffed_entrance="card", booth_early_minutes=10, max_offline_age=timedelta(hours=72), event_retention_days=90,
        no_show_minutes=15, repeat_tap_minutes=10,
    )
    entrance = cfg.door("entrance")
    assert (entrance.lock_active_high, entrance.unlock_seconds, entrance.held_open_seconds) == (True, 5.0, 60.0)
    assert (entrance.contact_pin, entrance.exit_button_pin, entrance.led_pin, entrance.buzzer_pin) == (None, None, None, None)
    assert entrance.label == "entrance"
    rc522 = entrance.reader
    assert (rc522.spi_bus, rc522.spi_device, rc522.reset_pin, rc522.poll_interval, rc522.dedupe_seconds) == (0, 0, 25, 0.15, 3.0)
    serial = cfg.door("booth-1").reader
    assert (serial.framing, serial.baudrate) == ("line", 9600)


def test_the_example_config_loads(capsys):
    assert main(["check-config", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == f"{EXAMPLE}: OK — branch kallio, 2 door(s): entrance (entrance), booth-1 (booth)\n"


def _fields(*classes) -> set[str]:
    return {f.name for cls in classes for f in dataclasses.fields(cls)}


#: Config fields that are not keys: where the file is, and uid_format lives in [cards].
_NOT_TOP_LEVEL_KEYS = {"path", "uid_format"}


def test_the_example_writes_out_every_key():
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert set(data) == _fields(Config) - _NOT_TOP_LEVEL_KEYS | {"cards"}
    assert set(data["cards"]) == {"uid_format"}
    assert set(data["policy"]) == _fields(PolicyConfig)
    assert set(data["web"]) == _fields(WebConfig)
    assert {key for door in data["doors"] for key in door} == _fields(DoorConfig)
    assert {key for door in data["doors"] for key in door["reader"]} == _fields(ReaderConfig)
    assert set(data["pin"]) == _fields(PinConfig)
    assert set(data["building"]) == _fields(BuildingConfig)
    # texts and files are written per announcement kind
    assert set(data["announcements"]) == _fields(AnnouncementConfig) - {"texts", "files"} | {
        "closing", "self_service_starts", "closing_files", "self_service_starts_files"}
    entrance = data["doors"][0]
    assert set(entrance["keypad"]) == {"type", "device", "baudrate"}
    assert set(entrance["display"]) == {"type", "i2c_port", "i2c_address", "languages"}


def test_the_docs_name_every_key():
    docs = DOCS.read_text(encoding="utf-8")
    keys = _fields(Config, PolicyConfig, DoorConfig, ReaderConfig, WebConfig) - {"path"}
    assert sorted(key for key in keys if f"`{key}`" not in docs) == []
    extras = (REPO / "docs" / "door-extras.md").read_text(encoding="utf-8")
    keys = _fields(PinConfig, BuildingConfig, AnnouncementConfig, KeypadConfig, DisplayConfig) - {"texts", "files"}
    keys |= {"closing", "self_service_starts", "closing_files", "self_service_starts_files"}
    assert sorted(key for key in keys if f"`{key}`" not in extras) == []


def test_the_check_config_output_in_the_docs_is_real(tmp_path, capsys):
    """docs/configuration.md shows a broken file and what check-config says about it."""
    docs = DOCS.read_text(encoding="utf-8")
    broken = re.search(r"<!-- broken-config -->\s*```toml\n(.*?)```", docs, re.S).group(1)
    shown = re.search(r"<!-- broken-config-output -->\s*```text\n(.*?)```", docs, re.S).group(1)
    command, output = shown.split("\n", 1)
    assert command == "$ omaovi check-config /etc/omaovi/omaovi.toml"
    path = write(tmp_path, broken)
    assert main(["check-config", str(path)]) == 1
    assert capsys.readouterr().out.replace(str(path), "/etc/omaovi/omaovi.toml") == output


def test_the_minimal_config_in_the_docs_loads(tmp_path):
    docs = DOCS.read_text(encoding="utf-8")
    minimal = re.search(r"<!-- minimal-config -->\s*```toml\n(.*?)```", docs, re.S).group(1)
    cfg = load(write(tmp_path, minimal))
    assert [door.id for door in cfg.doors] == ["entrance"]


def test_check_config_prints_every_problem_and_fails(tmp_path, capsys):
    path = write(tmp_path, HEAD + ENTRANCE + BOOTH.replace("= 5", "= 17") + '[policy]\nstaffed = "card"\n')
    assert main(["check-config", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f'{path}: policy.staffed = "card": unknown key; allowed keys here: '
        "booth_early_minutes, event_retention_days, max_offline_age, no_show_minutes, repeat_tap_minutes, staffed_entrance",
        f"{path}: doors[1].lock_pin = 17: GPIO17 is already used by doors[0].lock_pin",
        "2 problem(s) found.",
    ]


def test_check_config_accepts_a_good_file(tmp_path, capsys):
    path = write(tmp_path, HEAD + ENTRANCE + BOOTH)
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: OK — branch kallio, 2 door(s): entrance (entrance), booth-1 (booth)\n"


@pytest.mark.parametrize(
    "content, expected",
    [
        pytest.param(None, '(file) = "{path}": file not found', id="missing-file"),
        pytest.param(b"# Sein\xe4joki\n", '(file) = "byte 6": the file must be UTF-8 text', id="not-utf8"),
    ],
)
def test_check_config_reports_a_file_it_cannot_read(tmp_path, capsys, content, expected):
    path = tmp_path / "omaovi.toml"
    if content is not None:
        path.write_bytes(content)
    assert main(["check-config", str(path)]) == 1
    assert capsys.readouterr().out == f"{path}: {expected.format(path=path)}\n1 problem(s) found.\n"


# --- Nothing in a config file may crash the loader -------------------------------

_GOOD = tomllib.loads(
    HEAD
    + '[cards]\nuid_format = "hex"\n'
    + '[policy]\nstaffed_entrance = "card"\nbooth_early_minutes = 10\nno_show_minutes = 15\nmax_offline_age = "72h"\nevent_retention_days = 90\n'
    + ENTRANCE
    + 'name = "Main"\nlock_active_high = false\nunlock_seconds = 5\nheld_open_seconds = 60\n'
    + "contact_pin = 27\nexit_button_pin = 22\nled_pin = 23\nbuzzer_pin = 24\n"
    + '[doors.reader]\ntype = "mfrc522"\nspi_bus = 0\nspi_device = 0\nreset_pin = 25\npoll_interval = 0.15\ndedupe_seconds = 3\n'
    + BOOTH
    + '[doors.reader]\ntype = "serial"\ndevice = "/dev/ttyUSB0"\nframing = "rdm6300"\nbaudrate = 9600\n'
)
#: Every kind of TOML value, and strings that have crashed checks before.
_ODD_VALUES = [
    True, 0, -1, 2**63 - 1, 1.5, math.nan, math.inf, "", " ", "x", "Europe", "../etc", "a\x00b", "99999999999999999999d",
    [], [1], ["entrance"], {}, {"x": 1}, date(2026, 1, 1), time(8, 0), datetime(2026, 1, 1, 8, 0),
]


def _key_paths(value, path=()):
    """Every key and list position in a parsed TOML document, outermost first."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield path + (key,)
        yield from _key_paths(child, path + (key,))


_REMOVED = object()


def test_any_value_at_any_key_gives_a_config_or_a_config_error():
    parse(_GOOD, "/etc/omaovi/omaovi.toml")  # the starting point is good
    crashes = []
    for key_path in _key_paths(_GOOD):
        for value in [*_ODD_VALUES, _REMOVED]:
            data = copy.deepcopy(_GOOD)
            parent = data
            for key in key_path[:-1]:
                parent = parent[key]
            if value is _REMOVED:
                del parent[key_path[-1]]
            else:
                parent[key_path[-1]] = value
            try:
                parse(data, "/etc/omaovi/omaovi.toml")
            except ConfigError:
                pass
            except Exception as exc:  # noqa: BLE001 - collecting every crash is the point
                crashes.append(f"{key_path} = {value!r}: {type(exc).__name__}: {exc}")
    assert crashes == []


def _example_with_web(tmp_path, web: str) -> Path:
    text = EXAMPLE.read_text().replace('host = "127.0.0.1"\n', web, 1)
    path = tmp_path / "omaovi.toml"
    path.write_text(text.replace('"/etc/omaovi/', f'"{EXAMPLE.parent}/'))
    return path


def test_plain_http_to_the_network_is_refused_unless_the_config_accepts_its_cost(tmp_path, capsys):
    """Staff passwords in clear on the library's network: not by default, and not silently."""
    refused = _example_with_web(tmp_path, 'host = "0.0.0.0"\n')
    assert main(["check-config", str(refused)]) == 1
    out = capsys.readouterr().out
    assert 'web.host = "0.0.0.0": serves the staff page over plain HTTP to the network' in out
    assert "anyone on it can read staff passwords" in out and "plain_http_on_network = true" in out

    accepted = _example_with_web(tmp_path, 'host = "0.0.0.0"\n').read_text().replace(
        "plain_http_on_network = false", "plain_http_on_network = true").replace("secure_cookies = true", "secure_cookies = false")
    (tmp_path / "omaovi.toml").write_text(accepted)
    assert main(["check-config", str(tmp_path / "omaovi.toml")]) == 0
    out = capsys.readouterr().out
    assert "warning: web.plain_http_on_network: the staff page is plain HTTP on 0.0.0.0:8080" in out
    assert "cross the network unencrypted" in out


def test_the_staff_page_listens_on_this_machine_only_by_default():
    web = parse({"branch": "kallio", "database": "x.db", "consortium_key_file": "k",
                 "doors": [{"id": "entrance", "kind": "entrance", "lock_pin": 17}]}).web
    assert (web.host, web.plain_http_on_network, web.secure_cookies) == ("127.0.0.1", False, True)
