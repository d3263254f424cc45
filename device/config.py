"""The branch configuration: one TOML file, checked whole at start-up.

A door controller that starts with half a configuration is worse than one that does
not start, so every problem in the file is collected and reported together, each
naming the file, the key, the bad value and what is allowed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from device.cards import UID_FORMATS

DEFAULT_PATH = "/etc/omaovi/omaovi.toml"
#: The door id of events about the building as a whole (announcements, people left inside).
BUILDING = "building"

DOOR_KINDS = ("entrance", "booth")
READER_TYPES = ("mfrc522", "serial", "evdev", "stdin")

#: The SIP2 profiles ``sync.sip2`` knows (what each one reads is there); a test keeps the two in step.
SIP2_PROFILE_NAMES = ("koha", "koha-suomi", "evergreen", "lenient")
#: Profile names of earlier versions, read as today's: a branch's config keeps working after an upgrade.
#: ``generic`` read ``PA`` as the expiry date, as ``evergreen`` does now.
PROFILE_ALIASES = {"generic": "evergreen"}
#: The 14 positions of the patron status field in SIP2 24/64 replies, in order.
STATUS_BITS = (
    "charge_privileges_denied", "renewal_privileges_denied", "recall_privileges_denied",
    "hold_privileges_denied", "card_reported_lost", "too_many_items_charged",
    "too_many_items_overdue", "too_many_renewals", "too_many_claims_of_items_returned",
    "too_many_items_lost", "excessive_outstanding_fines", "excessive_outstanding_fees",
    "recall_overdue", "too_many_items_billed",
)
DEFAULT_BLOCKING_STATUS = ("charge_privileges_denied", "card_reported_lost")
#: How the card number is sent in ``AA``: the library system may look ids up
#: case-sensitively, or store them without leading zeros.
CARD_NUMBER_FORMS = ("as_read", "upper", "lower", "strip_leading_zeros")
SERIAL_FRAMINGS = ("line", "rdm6300")
STAFFED_ENTRANCE = ("card", "unlocked")
#: BCM GPIO numbers on the 40-pin header of every Raspberry Pi since the B+.
GPIO_PINS = range(0, 28)
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_DURATION = re.compile(r"^(\d+)\s*([mhd])$")


@dataclass(frozen=True)
class ReaderConfig:
    type: str
    #: serial: a port (/dev/ttyUSB0) or a pyserial URL (loop://); evdev: an input device path.
    device: str | None = None
    framing: str = "line"
    baudrate: int = 9600
    spi_bus: int = 0
    spi_device: int = 0
    #: BCM pin wired to the RC522's RST. Given explicitly because the mfrc522 package
    #: otherwise picks GPIO15 (the UART RX) once gpiozero has set BCM numbering.
    reset_pin: int = 25
    poll_interval: float = 0.15
    dedupe_seconds: float = 3.0


@dataclass(frozen=True)
class KeypadConfig:
    """A PIN keypad at a door: a GPIO matrix (rows driven, columns read) or a serial line device."""

    type: str
    row_pins: tuple[int, ...] = ()
    column_pins: tuple[int, ...] = ()
    #: One string per row, one character per column: what each key sends.
    keys: tuple[str, ...] = ("123", "456", "789", "*0#")
    device: str | None = None
    baudrate: int = 9600


@dataclass(frozen=True)
class DisplayConfig:
    """A small patron display at a door: an SSD1306 OLED on I2C, a serial line display, or an HTTP endpoint."""

    type: str
    languages: tuple[str, ...] = ("fi", "sv", "en")
    i2c_port: int = 1
    i2c_address: int = 0x3C
    device: str | None = None
    baudrate: int = 9600
    url: str | None = None


@dataclass(frozen=True)
class DoorConfig:
    id: str
    kind: str
    lock_pin: int
    name: str = ""
    resource: str | None = None
    lock_active_high: bool = True
    unlock_seconds: float = 5.0
    held_open_seconds: float = 60.0
    contact_pin: int | None = None
    exit_button_pin: int | None = None
    led_pin: int | None = None
    buzzer_pin: int | None = None
    #: A people counter's pulses for each person going in and out through this door.
    counter_in_pin: int | None = None
    counter_out_pin: int | None = None
    reader: ReaderConfig | None = None
    keypad: KeypadConfig | None = None
    display: DisplayConfig | None = None

    @property
    def label(self) -> str:
        return self.name or self.id


@dataclass(frozen=True)
class PolicyConfig:
    staffed_entrance: str = "card"
    booth_early_minutes: int = 10
    #: A booth reservation whose holder has not tapped this long after its start is a no-show.
    no_show_minutes: int = 15
    max_offline_age: timedelta = timedelta(hours=72)
    event_retention_days: int = 90
    #: A card's granted taps within this many minutes of its counted visit are one physical visit.
    repeat_tap_minutes: int = 10


@dataclass(frozen=True)
class WebConfig:
    """The optional ``[web]`` section: how ``omaovi web`` serves the staff page.

    Every key has a default. By default the page is plain HTTP on this machine only,
    for the HTTPS proxy that the installer sets up in front of it (docs/install.md):
    staff passwords and session cookies cross the library's network only encrypted.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    #: Serve plain HTTP on an address other people's machines reach. Without it a
    #: ``host`` that is not a loopback address is a configuration error.
    plain_http_on_network: bool = False
    #: Send the session cookie only over HTTPS. Follows ``plain_http_on_network``
    #: unless set: on behind the HTTPS proxy, off when browsers come over plain HTTP.
    secure_cookies: bool = True
    #: A session unused this long ends; staff then log in again.
    session_idle_minutes: int = 60
    #: Sessions end this long after login, however busy.
    session_max_hours: int = 12
    #: The file with the key that signs session cookies and CSRF tokens; created
    #: (readable by its owner only) on first start when missing.
    secret_key_file: Path | None = None
    #: Addresses that may read /metrics without a token (a Prometheus on the LAN).
    metrics_allow: tuple[str, ...] = ("127.0.0.1", "::1")
    #: Proxies (addresses or networks) whose X-Forwarded-For header names the client;
    #: from anyone else the header is ignored. Empty: the page is reached directly.
    trusted_proxies: tuple[str, ...] = ()
    #: Web sites that may show the public booth board in a frame (CSP frame-ancestors),
    #: such as "https://kirjasto.example.fi". Empty: no site may.
    board_frame_ancestors: tuple[str, ...] = ()
    #: Processes serving the page (admin_web/serve.py). Two keep 20 busy clients
    #: under 50 ms on two cores and leave a Pi 4's other two to the door controller.
    workers: int = 2


@dataclass(frozen=True)
class PinConfig:
    """The optional ``[pin]`` section: card + PIN at the doors with a keypad, in the modes named."""

    pepper_file: Path
    #: "none" or "card_pin" per mode.
    staffed: str = "none"
    self_service: str = "card_pin"
    length: int = 4
    enter_key: str = "#"
    reset_key: str = "*"
    timeout: float = 5.0
    max_wrong: int = 5
    wrong_window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=30)

    def required_in(self, mode: str) -> bool:
        return {"staffed": self.staffed, "self_service": self.self_service}.get(mode) == "card_pin"


@dataclass(frozen=True)
class BuildingConfig:
    """The optional ``[building]`` section: relay outputs for the lights and the intruder alarm."""

    lights_pin: int | None = None
    lights_active_high: bool = True
    #: Minutes the lights stay on after the branch closes.
    lights_off_after: int = 15
    alarm_pin: int | None = None
    alarm_active_high: bool = True
    #: Minutes after closing before the alarm may be armed.
    alarm_arm_after: int = 5


@dataclass(frozen=True)
class AnnouncementConfig:
    """The optional ``[announcements]`` section. Offsets and texts are only the defaults:
    the staff page may change them (``Store.set_announcement_settings``)."""

    first_minutes: int = 15
    every_minutes: int = 5
    languages: tuple[str, ...] = ("fi", "sv", "en")
    #: Per announcement kind and language: a text overriding the catalogue's.
    texts: dict = field(default_factory=dict)
    #: Per announcement kind and language: an audio file played instead of speech.
    files: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CentralConfig:
    """The optional ``[central]`` section: where ``omaovi sync`` finds the central service."""

    base_url: str
    #: A file holding this branch's bearer token, so the token is not in the config
    #: file that installers copy around and paste into tickets.
    token_file: Path
    #: Seconds to wait for the service to connect, or to send the next bytes.
    timeout: float = 10.0
    #: Take the hours from the central service instead of Kirkanta or local edits.
    hours_managed_centrally: bool = False
    #: Seconds between sync rounds.
    interval: int = 300
    #: An answer larger than this is refused whole while it is still arriving.
    max_response_bytes: int = 50_000_000


@dataclass(frozen=True)
class Sip2Settings:
    """The optional ``[sip2]`` section: the library system the device asks at tap time.

    The names are ``sync.sip2.Sip2Config``'s, except that the login password is in
    ``password_file`` (read when the device starts), so it stays out of a file that
    installers copy around and paste into tickets.
    """

    host: str
    port: int
    username: str
    password_file: Path
    institution: str
    profile: str
    location: str = ""
    terminal_password: str = field(default="", repr=False)
    tls: bool = False
    tls_verify: bool = True
    tls_ca_file: Path | None = None
    allowed_classes: tuple[str, ...] = ()
    blocking_status: tuple[str, ...] = DEFAULT_BLOCKING_STATUS
    #: Seconds one whole check may take. A card the cache cannot decide waits for it,
    #: so it is kept below MAX_TAP_AGE_SECONDS: a longer wait would only answer a
    #: patron who left. (The check runs on a worker; the door loop does not wait.)
    timeout: float = 1.5
    breaker_failures: int = 3
    breaker_cooldown: float = 30.0
    card_number_form: str = "as_read"


@dataclass(frozen=True)
class Sections:
    """The optional sections, checked with the rest of the file but kept out of ``Config``:
    each is needed by one process only (``central`` by sync, ``sip2`` by the device)."""

    central: CentralConfig | None = None
    sip2: Sip2Settings | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    branch: str
    timezone: str
    database: Path
    consortium_key_file: Path
    doors: tuple[DoorConfig, ...]
    uid_format: str = "hex"
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    web: WebConfig = field(default_factory=WebConfig)
    pin: PinConfig | None = None
    building: BuildingConfig = field(default_factory=BuildingConfig)
    announcements: AnnouncementConfig | None = None

    def door(self, door_id: str) -> DoorConfig:
        for door in self.doors:
            if door.id == door_id:
                return door
        raise KeyError(door_id)

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Problem:
    key: str
    value: Any
    allowed: str

    def __str__(self) -> str:
        shown = "(missing)" if self.value is _MISSING else _show(self.value)
        return f"{self.key} = {shown}: {self.allowed}"


class ConfigError(Exception):
    """Raised with every problem found in one configuration file."""

    def __init__(self, path: Path | str, problems: list[Problem]):
        self.path = Path(path)
        self.problems = problems
        lines = [f"{self.path}: {p}" for p in problems]
        super().__init__("\n".join(lines))


_MISSING = object()


def _show(value: Any) -> str:
    """The value as it would be written in TOML, on one line."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{…}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, (date, time)):  # datetime is a date
        return value.isoformat()
    return repr(value)


class _Section:
    """Reads typed values out of one TOML table and records what is wrong with them."""

    def __init__(self, table: dict, prefix: str, problems: list[Problem]):
        self.table = table
        self.prefix = prefix
        self.problems = problems
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def fail(self, name: str, value: Any, allowed: str) -> None:
        self.problems.append(Problem(self.key(name), value, allowed))

    def get(self, name: str, check: Callable[[Any], Any], allowed: str, default: Any = _MISSING) -> Any:
        """Return the checked value, the default, or None after recording a problem."""
        self.seen.add(name)
        if name not in self.table:
            if default is _MISSING:
                self.fail(name, _MISSING, f"required; {allowed}")
                return None
            return default
        value = self.table[name]
        try:
            return check(value)
        except (TypeError, ValueError):
            self.fail(name, value, allowed)
            return None

    def choice(self, name: str, choices: tuple[str, ...], default: Any = _MISSING) -> Any:
        return self.get(name, lambda v: _one_of(v, choices), "must be one of " + ", ".join(choices), default)

    def integer(self, name: str, low: int, high: int, default: Any = _MISSING) -> Any:
        return self.get(name, lambda v: _int_in(v, low, high), f"must be a whole number from {low} to {high}", default)

    def number(self, name: str, low: float, high: float, default: Any = _MISSING) -> Any:
        return self.get(name, lambda v: _number_in(v, low, high), f"must be a number from {low:g} to {high:g}", default)

    def boolean(self, name: str, default: Any = _MISSING) -> Any:
        return self.get(name, _bool, "must be true or false", default)

    def text(self, name: str, default: Any = _MISSING) -> Any:
        return self.get(name, _text, "must be a non-empty string", default)

    def identifier(self, name: str, default: Any = _MISSING) -> Any:
        return self.get(
            name, _identifier, "must be 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit", default
        )

    def pin(self, name: str, default: Any = _MISSING) -> Any:
        return self.integer(name, GPIO_PINS.start, GPIO_PINS.stop - 1, default)

    def finish(self) -> None:
        """Unknown keys are errors: a misspelt key silently ignored is a door set up wrong."""
        for name in self.table:
            if name not in self.seen:
                allowed = ", ".join(sorted(self.seen))
                self.fail(name, self.table[name], f"unknown key; allowed keys here: {allowed}")


def _one_of(value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError
    return value


def _int_in(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError
    return value


def _number_in(value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError
    return value


def _identifier(value: Any) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ValueError
    return value


def _timezone(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # OSError: a name such as "Europe" is a directory in the time zone database.
        raise ValueError from exc
    return value


def parse_duration(value: Any) -> timedelta:
    """'30m', '72h' or '7d'."""
    match = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(value)
    amount, unit = int(match.group(1)), match.group(2)
    try:
        return timedelta(minutes=amount) if unit == "m" else timedelta(hours=amount) if unit == "h" else timedelta(days=amount)
    except OverflowError:  # "99999999999d" is no more a duration than "soon"
        raise ValueError(value) from None


def _offline_age(value: Any) -> timedelta:
    age = parse_duration(value)
    if not timedelta(minutes=5) <= age <= timedelta(days=90):
        raise ValueError(value)
    return age


def _table(section: _Section, name: str, required: bool) -> dict | None:
    value = section.table.get(name, _MISSING)
    section.seen.add(name)
    if value is _MISSING:
        if required:
            section.fail(name, _MISSING, "required table")
        return None
    if not isinstance(value, dict):
        section.fail(name, value, "must be a table")
        return None
    return value


def _reader(table: dict, prefix: str, problems: list[Problem]) -> ReaderConfig | None:
    s = _Section(table, prefix, problems)
    kind = s.choice("type", READER_TYPES)
    values: dict[str, Any] = {"type": kind}
    if kind in ("serial", "evdev"):
        values["device"] = s.text("device")
    if kind == "serial":
        values["framing"] = s.choice("framing", SERIAL_FRAMINGS, "line")
        values["baudrate"] = _baudrate(s)
    if kind == "mfrc522":
        values["spi_bus"] = s.integer("spi_bus", 0, 6, 0)
        values["spi_device"] = s.integer("spi_device", 0, 2, 0)
        values["reset_pin"] = s.pin("reset_pin", 25)
        values["poll_interval"] = s.number("poll_interval", 0.1, 0.2, 0.15)
    values["dedupe_seconds"] = s.number("dedupe_seconds", 0, 60, 3.0)
    s.finish()
    if any(v is None for k, v in values.items() if k != "device") or (kind in ("serial", "evdev") and values["device"] is None):
        return None
    return ReaderConfig(**values)


def _baudrate(s: _Section) -> Any:
    return s.get(
        "baudrate", lambda v: _one_of_int(v, _BAUDRATES), "must be one of " + ", ".join(map(str, _BAUDRATES)), 9600
    )


def _keypad(table: dict, prefix: str, problems: list[Problem]) -> KeypadConfig | None:
    s = _Section(table, prefix, problems)
    kind = s.choice("type", KEYPAD_TYPES)
    values: dict[str, Any] = {"type": kind}
    if kind == "matrix":
        pins = f"must be a list of 1 to 8 different GPIO numbers from {GPIO_PINS.start} to {GPIO_PINS.stop - 1}"
        values["row_pins"] = s.get("row_pins", _pin_list, pins)
        values["column_pins"] = s.get("column_pins", _pin_list, pins)
        values["keys"] = s.get(
            "keys", lambda v: _list_of(v, _key_row), f"must be a list of strings of the keys {KEYPAD_KEYS}, one per row",
            KeypadConfig.keys,
        )
        rows, columns, keys = values["row_pins"], values["column_pins"], values["keys"]
        if rows and columns and keys and (len(keys) != len(rows) or any(len(k) != len(columns) for k in keys)):
            s.fail("keys", list(keys), f"must have {len(rows)} rows of {len(columns)} keys, one per row and column pin")
            values["keys"] = None
    elif kind == "serial":
        values["device"] = s.text("device")
        values["baudrate"] = _baudrate(s)
    s.finish()
    return None if any(v is None for v in values.values()) else KeypadConfig(**values)


def _display(table: dict, prefix: str, problems: list[Problem]) -> DisplayConfig | None:
    s = _Section(table, prefix, problems)
    kind = s.choice("type", DISPLAY_TYPES)
    values: dict[str, Any] = {"type": kind, "languages": _languages(s)}
    if kind == "ssd1306":
        values["i2c_port"] = s.integer("i2c_port", 0, 10, 1)
        values["i2c_address"] = s.integer("i2c_address", 0x03, 0x77, 0x3C)
    elif kind == "serial":
        values["device"] = s.text("device")
        values["baudrate"] = _baudrate(s)
    elif kind == "http":
        values["url"] = s.get("url", _base_url, "must be an http:// or https:// URL such as \"http://127.0.0.1:8080/message\"")
    s.finish()
    return None if any(v is None for v in values.values()) else DisplayConfig(**values)


def _languages(s: _Section) -> Any:
    return s.get(
        "languages", lambda v: _unique(_list_of(v, lambda x: _one_of(x, LANGUAGES))),
        "must be a list of one or more different languages from " + ", ".join(LANGUAGES), LANGUAGES,
    )


def _unique(values: tuple) -> tuple:
    if not values or len(set(values)) != len(values):
        raise ValueError
    return values


def _pin_list(value: Any) -> tuple[int, ...]:
    pins = _unique(_list_of(value, lambda v: _int_in(v, GPIO_PINS.start, GPIO_PINS.stop - 1)))
    if len(pins) > 8:
        raise ValueError
    return pins


def _key_row(value: Any) -> str:
    if not isinstance(value, str) or not value or any(c not in KEYPAD_KEYS for c in value):
        raise ValueError
    return value


def _key(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 1 or value not in KEYPAD_KEYS:
        raise ValueError
    return value


def _one_of_int(value: Any, choices: tuple[int, ...]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
        raise ValueError
    return value


_PIN_KEYS = ("lock_pin", "contact_pin", "exit_button_pin", "led_pin", "buzzer_pin", "counter_in_pin", "counter_out_pin")
KEYPAD_TYPES = ("matrix", "serial")
DISPLAY_TYPES = ("ssd1306", "serial", "http")
LANGUAGES = ("fi", "sv", "en")
PIN_MODES = ("none", "card_pin")
KEYPAD_KEYS = "0123456789*#ABCD"
_BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
_A_FILE = "must be a file path (relative paths are relative to this file)"


def _door(table: Any, index: int, problems: list[Problem]) -> DoorConfig | None:
    prefix = f"doors[{index}]."
    if not isinstance(table, dict):
        problems.append(Problem(f"doors[{index}]", table, "must be a table ([[doors]])"))
        return None
    s = _Section(table, prefix, problems)
    values: dict[str, Any] = {
        "id": s.identifier("id"),
        "name": s.get("name", lambda v: v if isinstance(v, str) else _raise(), "must be a string", ""),
        "kind": s.choice("kind", DOOR_KINDS),
        "lock_pin": s.pin("lock_pin"),
        "lock_active_high": s.boolean("lock_active_high", True),
        "unlock_seconds": s.number("unlock_seconds", 1, 60, 5.0),
        "held_open_seconds": s.number("held_open_seconds", 5, 3600, 60.0),
    }
    for optional in _PIN_KEYS[1:]:
        values[optional] = s.pin(optional, None)
    if values["kind"] == "booth":
        values["resource"] = s.text("resource")
    elif "resource" in table:
        s.seen.add("resource")
        s.fail("resource", table["resource"], "only a booth has a resource; remove it or set kind = \"booth\"")
    for counter, other in (("counter_in_pin", "counter_out_pin"), ("counter_out_pin", "counter_in_pin")):
        if values[counter] is None:
            continue
        if values["kind"] == "booth":
            s.fail(counter, values[counter], "only an entrance has a people counter; a booth is inside the building")
            values[counter] = None
        elif other not in table:
            s.fail(counter, values[counter], f"a people counter needs both pulse inputs; add {other}")
            values[counter] = None
    reader_table = _table(s, "reader", required=False)
    reader = _reader(reader_table, f"{prefix}reader.", problems) if reader_table is not None else None
    parts, broken = {}, reader_table is not None and reader is None
    for name, part in (("keypad", _keypad), ("display", _display)):
        part_table = _table(s, name, required=False)
        parts[name] = part(part_table, f"{prefix}{name}.", problems) if part_table is not None else None
        broken = broken or (part_table is not None and parts[name] is None)
    s.finish()
    if broken:
        return None
    if any(values[k] is None for k in ("id", "kind", "lock_pin", "lock_active_high", "unlock_seconds", "held_open_seconds")):
        return None
    if values["kind"] == "booth" and values["resource"] is None:
        return None
    return DoorConfig(reader=reader, **parts, **values)


def _raise() -> Any:
    raise ValueError


def parse(data: dict, path: Path | str = "<config>") -> Config:
    """Build a Config from parsed TOML, or raise ConfigError listing every problem."""
    return parse_sections(data, path)[0]


def parse_sections(data: dict, path: Path | str = "<config>") -> tuple[Config, Sections]:
    """Build a Config and the optional sections, or raise ConfigError listing every problem.

    The optional sections are checked together with the rest of the file, so
    ``check-config`` reports their problems too, but they are returned beside
    Config rather than inside it: each is needed by one process only.
    """
    path = Path(path)
    problems: list[Problem] = []
    s = _Section(data, "", problems)
    base = path.parent

    def a_path(value: Any) -> Path:
        return (base / _text(value)).resolve()

    branch = s.identifier("branch")
    timezone = s.get("timezone", _timezone, "must be an IANA time zone name such as Europe/Helsinki", "Europe/Helsinki")
    database = s.get("database", a_path, "must be a file path (relative paths are relative to this file)")
    key_file = s.get("consortium_key_file", a_path, "must be a file path (relative paths are relative to this file)")

    cards = _Section(_table(s, "cards", required=False) or {}, "cards.", problems)
    uid_format = cards.choice("uid_format", UID_FORMATS, "hex")
    cards.finish()

    p = _Section(_table(s, "policy", required=False) or {}, "policy.", problems)
    policy = PolicyConfig(
        staffed_entrance=p.choice("staffed_entrance", STAFFED_ENTRANCE, "card"),
        booth_early_minutes=p.integer("booth_early_minutes", 0, 60, 10),
        no_show_minutes=p.integer("no_show_minutes", 1, 240, 15),
        max_offline_age=p.get("max_offline_age", _offline_age, 'must be a duration from "5m" to "90d", such as "72h"', timedelta(hours=72)),
        event_retention_days=p.integer("event_retention_days", 1, 3650, 90),
        repeat_tap_minutes=p.integer("repeat_tap_minutes", 0, 240, 10),
    )
    p.finish()

    web = _web(_table(s, "web", required=False) or {}, a_path, database, problems)

    # Looked at only when present, so that the allowed-keys hint for a misspelt key
    # keeps listing the sections every branch uses.
    central_table = _table(s, "central", required=False) if "central" in data else None
    central = _central(central_table, a_path, problems) if central_table is not None else None
    sip2_table = _table(s, "sip2", required=False) if "sip2" in data else None
    sip2 = _sip2(sip2_table, a_path, problems) if sip2_table is not None else None
    extras = {}
    for name, section in (("pin", _pin), ("building", _building), ("announcements", _announcements)):
        table = _table(s, name, required=False) if name in data else None
        if table is not None and (value := section(table, a_path, problems)) is not None:
            extras[name] = value

    s.seen.add("doors")
    raw_doors = data.get("doors", _MISSING)
    doors: list[DoorConfig] = []
    if raw_doors is _MISSING:
        problems.append(Problem("doors", _MISSING, "at least one [[doors]] table is required"))
    elif not isinstance(raw_doors, list) or not raw_doors:
        problems.append(Problem("doors", raw_doors, "must be one or more [[doors]] tables"))
    else:
        doors = [d for i, t in enumerate(raw_doors) if (d := _door(t, i, problems)) is not None]
    s.finish()
    _check_doors_together(doors, extras.get("building", BuildingConfig()), problems)
    if "pin" in extras and not any(d.keypad for d in doors):
        problems.append(Problem("pin", data["pin"], "asks for a PIN, but no door has a [doors.keypad] to type it on"))

    if problems:
        raise ConfigError(path, problems)
    config = Config(
        path=path, branch=branch, timezone=timezone, database=database, consortium_key_file=key_file,
        doors=tuple(doors), uid_format=uid_format, policy=policy, web=web, **extras,
    )
    return config, Sections(central=central, sip2=sip2)


def _web(table: dict, a_path: Callable[[Any], Path], database: Path | None, problems: list[Problem]) -> WebConfig:
    s = _Section(table, "web.", problems)
    default_secret = database.parent / "web-secret.key" if database is not None else None
    values: dict[str, Any] = {
        "host": s.get("host", _ip_address, "must be an IP address to listen on, such as \"127.0.0.1\" (this machine, behind the HTTPS proxy) or \"0.0.0.0\" (every address)", "127.0.0.1"),
        "port": s.integer("port", 1, 65535, 8080),
        "plain_http_on_network": s.boolean("plain_http_on_network", False),
        "session_idle_minutes": s.integer("session_idle_minutes", 5, 24 * 60, 60),
        "session_max_hours": s.integer("session_max_hours", 1, 24 * 7, 12),
        "secret_key_file": s.get("secret_key_file", a_path, "must be a file path (relative paths are relative to this file)", default_secret),
        "metrics_allow": s.get(
            "metrics_allow", lambda v: _list_of(v, _ip_address), "must be a list of IP addresses, such as [\"127.0.0.1\"]",
            ("127.0.0.1", "::1"),
        ),
        "trusted_proxies": s.get(
            "trusted_proxies", lambda v: _list_of(v, _ip_network),
            "must be a list of IP addresses or networks, such as [\"127.0.0.1\", \"10.20.0.0/24\"]", (),
        ),
        "board_frame_ancestors": s.get(
            "board_frame_ancestors", lambda v: _list_of(v, _origin),
            "must be a list of web site origins, such as [\"https://kirjasto.example.fi\"]", (),
        ),
        "workers": s.integer("workers", 1, 8, 2),
    }
    values["secure_cookies"] = s.boolean("secure_cookies", not values["plain_http_on_network"])
    s.finish()
    host = values["host"]
    if host is not None and not ipaddress.ip_address(host).is_loopback and not values["plain_http_on_network"]:
        problems.append(Problem(
            "web.host", host,
            "serves the staff page over plain HTTP to the network, where anyone on it can read staff passwords "
            "and take over their sessions. Keep \"127.0.0.1\" behind the HTTPS proxy (docs/install.md), or add "
            "plain_http_on_network = true to accept that",
        ))
    return WebConfig(**{k: v for k, v in values.items() if v is not None})


def warnings(config: Config) -> list[str]:
    """What a valid config still costs, for ``check-config`` and the log to say aloud."""
    web = config.web
    if not web.plain_http_on_network or ipaddress.ip_address(web.host).is_loopback:
        return []
    said = [
        f"web.plain_http_on_network: the staff page is plain HTTP on {web.host}:{web.port}; staff passwords and "
        "session cookies cross the network unencrypted, readable by anyone on it",
    ]
    if web.secure_cookies:
        said.append("web.secure_cookies = true over plain HTTP: browsers drop the login cookie, nobody can log in")
    return said


def _ip_address(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError
    return str(ipaddress.ip_address(value))


def _ip_network(value: Any) -> str:
    """An address or a network such as 10.20.0.0/24; one with host bits set is refused as likely a typo."""
    if not isinstance(value, str):
        raise ValueError
    return str(ipaddress.ip_network(value))


def _origin(value: Any) -> str:
    """scheme://host[:port] and nothing else, as CSP frame-ancestors wants it."""
    if not isinstance(value, str):
        raise ValueError
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError
    return f"{parts.scheme}://{parts.netloc}"


def _pin(table: dict, a_path: Callable[[Any], Path], problems: list[Problem]) -> PinConfig | None:
    s = _Section(table, "pin.", problems)
    duration = 'must be a duration from "1m" to "7d", such as "15m"'
    values: dict[str, Any] = {
        "pepper_file": s.get("pepper_file", a_path, _A_FILE),
        "staffed": s.choice("staffed", PIN_MODES, "none"),
        "self_service": s.choice("self_service", PIN_MODES, "card_pin"),
        "length": s.integer("length", 4, 12, 4),
        "enter_key": s.get("enter_key", _key, f"must be one key of {KEYPAD_KEYS}", "#"),
        "reset_key": s.get("reset_key", _key, f"must be one key of {KEYPAD_KEYS}", "*"),
        "timeout": s.number("timeout", 2, 60, 5.0),
        "max_wrong": s.integer("max_wrong", 1, 100, 5),
        "wrong_window": s.get("wrong_window", _short_duration, duration, timedelta(minutes=15)),
        "lockout": s.get("lockout", _short_duration, duration, timedelta(minutes=30)),
    }
    for name in ("enter_key", "reset_key"):
        if values[name] is not None and values[name].isdigit():
            s.fail(name, values[name], "must not be a digit: digits are the PIN")
            values[name] = None
    if values["enter_key"] is not None and values["enter_key"] == values["reset_key"]:
        s.fail("reset_key", values["reset_key"], "must differ from enter_key")
        values["reset_key"] = None
    s.finish()
    return None if any(v is None for v in values.values()) else PinConfig(**values)


def _short_duration(value: Any) -> timedelta:
    length = parse_duration(value)
    if not timedelta(minutes=1) <= length <= timedelta(days=7):
        raise ValueError(value)
    return length


def _building(table: dict, a_path: Callable[[Any], Path], problems: list[Problem]) -> BuildingConfig | None:
    s = _Section(table, "building.", problems)
    values: dict[str, Any] = {
        "lights_pin": s.pin("lights_pin", None),
        "lights_active_high": s.boolean("lights_active_high", True),
        "lights_off_after": s.integer("lights_off_after", 0, 240, 15),
        "alarm_pin": s.pin("alarm_pin", None),
        "alarm_active_high": s.boolean("alarm_active_high", True),
        "alarm_arm_after": s.integer("alarm_arm_after", 0, 240, 5),
    }
    s.finish()
    optional = ("lights_pin", "alarm_pin")
    broken = any(v is None for k, v in values.items() if k not in optional) or any(
        k in table and values[k] is None for k in optional
    )
    return None if broken else BuildingConfig(**values)


#: What is announced; each is a key of device.messages.CATALOGUE.
ANNOUNCEMENT_KINDS = ("closing", "self_service_starts")


def _announcements(table: dict, a_path: Callable[[Any], Path], problems: list[Problem]) -> AnnouncementConfig | None:
    s = _Section(table, "announcements.", problems)
    def per_language(what: str, example: str) -> str:
        return f"must be a table of languages ({', '.join(LANGUAGES)}) to {what}, such as {{ fi = {example} }}"

    values: dict[str, Any] = {
        "first_minutes": s.integer("first_minutes", 1, 120, 15),
        "every_minutes": s.integer("every_minutes", 1, 60, 5),
        "languages": _languages(s),
    }
    texts, files = {}, {}
    for kind in ANNOUNCEMENT_KINDS:
        texts[kind] = s.get(
            kind, lambda v: _by_language(v, _spoken_text), per_language("texts", '"…"') + ", none beginning with a dash (-)", {}
        )
        files[kind] = s.get(
            f"{kind}_files", lambda v: _by_language(v, a_path), per_language("audio files", '"closing-fi.wav"'), {}
        )
    s.finish()
    if any(v is None for v in (*values.values(), *texts.values(), *files.values())):
        return None
    return AnnouncementConfig(texts=texts, files=files, **values)


def looks_like_an_option(text: str) -> bool:
    """A text that begins with "-" would read as an option wherever it ended up on a command line;
    no text staff or the config give is allowed to (the announcements are spoken by espeak-ng)."""
    return text.lstrip().startswith("-")


def _spoken_text(value: Any) -> str:
    if looks_like_an_option(_text(value)):
        raise ValueError
    return value


def _by_language(value: Any, check: Callable[[Any], Any]) -> dict:
    if not isinstance(value, dict) or any(lang not in LANGUAGES for lang in value):
        raise ValueError
    return {lang: check(item) for lang, item in value.items()}


def _central(table: dict, a_path: Callable[[Any], Path], problems: list[Problem]) -> CentralConfig | None:
    s = _Section(table, "central.", problems)
    values: dict[str, Any] = {
        "base_url": s.get("base_url", _base_url, "must be an http:// or https:// URL such as \"https://central.example.fi/api\""),
        "token_file": s.get("token_file", a_path, "must be a file path (relative paths are relative to this file)"),
        "timeout": s.number("timeout", 1, 120, 10.0),
        "hours_managed_centrally": s.boolean("hours_managed_centrally", False),
        "interval": s.integer("interval", 10, 86400, 300),
        "max_response_bytes": s.integer("max_response_bytes", 10_000, 1_000_000_000, 50_000_000),
    }
    s.finish()
    if any(value is None for value in values.values()):
        return None
    return CentralConfig(**values)


#: The longest SIP2 check a tap may wait for; see Sip2Settings.timeout.
SIP2_MAX_TIMEOUT = 3.0


def _sip2(table: dict, a_path: Callable[[Any], Path], problems: list[Problem]) -> Sip2Settings | None:
    s = _Section(table, "sip2.", problems)
    a_file = "must be a file path (relative paths are relative to this file)"
    values: dict[str, Any] = {
        "host": s.get("host", _host, "must be a host name or IP address, such as \"sip2.kirjasto.example\""),
        "port": s.integer("port", 1, 65535),
        "tls": s.boolean("tls", False),
        "tls_verify": s.boolean("tls_verify", True),
        "tls_ca_file": s.get("tls_ca_file", a_path, a_file, None),
        "username": s.get("username", _sip2_text, "must be a non-empty string without '|'"),
        "password_file": s.get("password_file", a_path, a_file),
        "institution": s.get("institution", _sip2_text, "must be a non-empty string without '|'"),
        "location": s.get("location", _sip2_field, "must be a string without '|'", ""),
        "terminal_password": s.get("terminal_password", _sip2_field, "must be a string without '|'", ""),
        "profile": s.get(
            "profile", lambda v: _one_of(PROFILE_ALIASES.get(v, v), SIP2_PROFILE_NAMES), "must be one of " + ", ".join(SIP2_PROFILE_NAMES)
        ),
        "allowed_classes": s.get(
            "allowed_classes", lambda v: _list_of(v, _text), "must be a list of patron class codes, such as [\"AIKUINEN\"]", ()
        ),
        "blocking_status": s.get(
            "blocking_status", lambda v: _list_of(v, lambda x: _one_of(x, STATUS_BITS)),
            "must be a list of status bit names from " + ", ".join(STATUS_BITS), DEFAULT_BLOCKING_STATUS,
        ),
        "timeout": s.number("timeout", 0.1, SIP2_MAX_TIMEOUT, 1.5),
        "breaker_failures": s.integer("breaker_failures", 1, 100, 3),
        "breaker_cooldown": s.number("breaker_cooldown", 1, 3600, 30.0),
        "card_number_form": s.choice("card_number_form", CARD_NUMBER_FORMS, "as_read"),
    }
    s.finish()
    if any(value is None for key, value in values.items() if key != "tls_ca_file") or (
        "tls_ca_file" in table and values["tls_ca_file"] is None
    ):
        return None
    return Sip2Settings(**values)


def _host(value: Any) -> str:
    """A bare name or address: a URL ("sip2://…", "host/path") or a "host:port" is a mistake to report."""
    if not isinstance(value, str) or not value or any(c.isspace() or c in "/[]" for c in value):
        raise ValueError
    if value.count(":") == 1:  # host:port; an IPv6 address has at least two colons
        raise ValueError
    return value


def _sip2_field(value: Any) -> str:
    """SIP2 ends a field with '|' and a message with CR, so neither may be in a value."""
    if not isinstance(value, str) or "|" in value or "\r" in value:
        raise ValueError
    return value


def _sip2_text(value: Any) -> str:
    return _sip2_field(_text(value))


def _list_of(value: Any, check: Callable[[Any], Any]) -> tuple:
    if not isinstance(value, list):
        raise ValueError
    return tuple(check(item) for item in value)


def _base_url(value: Any) -> str:
    """An absolute http(s) URL without query or fragment; a trailing slash is dropped."""
    if not isinstance(value, str):
        raise ValueError
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError
    return value.strip().rstrip("/")


#: The pins each SPI bus takes on the header (BCM): MISO, MOSI and SCLK shared by its
#: devices, then one chip-select per device (spi_device 0, 1, 2). Buses 3-6 are a Pi 4's.
SPI_PINS = {
    0: ((9, 10, 11), (8, 7)),
    1: ((19, 20, 21), (18, 17, 16)),
    3: ((1, 2, 3), (0, 24)),
    4: ((5, 6, 7), (4, 25)),
    5: ((13, 14, 15), (12, 26)),
    6: ((19, 20, 21), (18, 27)),
}
#: Buses whose every chip select the system takes once the bus is on: dtparam=spi=on
#: makes both /dev/spidev0.0 and /dev/spidev0.1, whichever the reader uses.
SPI_ALL_SELECTS = (0,)
#: SDA and SCL of the I2C buses on the header (bus 0 is the HAT EEPROM's).
I2C_PINS = {0: (0, 1), 1: (2, 3)}
#: The names of the UART on GPIO14 (TX) and GPIO15 (RX): /dev/serial0 is a link to
#: ttyS0 or ttyAMA0, whichever the Pi model puts on those pins.
GPIO_UART = ("/dev/serial0", "/dev/ttyAMA0", "/dev/ttyS0")
UART_PINS = (14, 15)


def _check_doors_together(doors: list[DoorConfig], building: BuildingConfig, problems: list[Problem]) -> None:
    """What no single door can get wrong on its own: shared ids, pins and ports.

    Readers and displays take pins without naming them (an RC522 the SPI bus's,
    an SSD1306 the I2C bus's, a reader on /dev/serial0 GPIO14 and 15), so those
    are reserved first, and a lock wired to one of them is named as the mistake.
    Devices on one bus share its bus pins; nothing else may.
    """
    ids: dict[str, int] = {}
    for index, door in enumerate(doors):
        if door.id == BUILDING:
            problems.append(Problem(f"doors[{index}].id", door.id, f"{BUILDING!r} names the events of the building as a whole"))
        if door.id in ids:
            problems.append(Problem(f"doors[{index}].id", door.id, f"must be unique; doors[{ids[door.id]}] has the same id"))
        ids.setdefault(door.id, index)
    pins: dict[int, tuple[str, str | None]] = {}  # pin: (who uses it, the bus it is shared on)
    for key, value, pin, owner, bus in [*_implicit_pins(doors), *_explicit_pins(doors, building)]:
        if pin in pins and (bus is None or pins[pin][1] != bus):
            problems.append(Problem(key, value, f"GPIO{pin} is already used by {pins[pin][0]}"))
        else:
            pins.setdefault(pin, (owner, bus))
    ports: dict[str, str] = {}
    for key, value, port, part in _ports(doors):
        if port in ports:
            owner = ports[port]
            same = "" if port == value else f" ({port})"
            allowed = (f"already the reader of {owner.removesuffix('.reader')}; each door needs its own reader"
                       if part == "reader" and owner.endswith(".reader") else
                       f"the same port{same} as {owner}; one port serves one device")
            problems.append(Problem(key, value, allowed))
        else:
            ports[port] = key


def _implicit_pins(doors: list[DoorConfig]):
    """(key, value, pin, owner, bus) for the pins readers and displays take by their bus."""
    for index, door in enumerate(doors):
        prefix = f"doors[{index}]"
        reader, display, keypad = door.reader, door.display, door.keypad
        if reader is not None and reader.type == "mfrc522" and reader.spi_bus in SPI_PINS:
            shared, selects = SPI_PINS[reader.spi_bus]
            owner = f"the RC522 of {prefix}.reader (SPI bus {reader.spi_bus})"
            for pin in shared:
                yield f"{prefix}.reader", f"spi{reader.spi_bus}", pin, owner, f"spi{reader.spi_bus}"
            if reader.spi_bus in SPI_ALL_SELECTS:
                for pin in selects:
                    yield f"{prefix}.reader", f"spi{reader.spi_bus}", pin, owner, f"spi{reader.spi_bus}"
            elif reader.spi_device < len(selects):
                # Shared only with a second reader on the same device, which the port check reports.
                device = f"spi{reader.spi_bus}.{reader.spi_device}"
                yield f"{prefix}.reader", device, selects[reader.spi_device], owner, device
        if display is not None and display.type == "ssd1306" and display.i2c_port in I2C_PINS:
            for pin in I2C_PINS[display.i2c_port]:
                yield (f"{prefix}.display", f"i2c{display.i2c_port}", pin,
                       f"the SSD1306 of {prefix}.display (I2C bus {display.i2c_port})", f"i2c{display.i2c_port}")
        for part, name in ((reader, "reader"), (keypad, "keypad"), (display, "display")):
            device = getattr(part, "device", None)
            if device is not None and _port(device) == "the GPIO UART":
                for pin in UART_PINS:
                    yield f"{prefix}.{name}", device, pin, f"{prefix}.{name} on {device} (the GPIO UART)", "uart"


def _explicit_pins(doors: list[DoorConfig], building: BuildingConfig):
    """(key, value, pin, owner, None) for every pin the file names."""
    for key in ("lights_pin", "alarm_pin"):
        if (pin := getattr(building, key)) is not None:
            yield f"building.{key}", pin, pin, f"building.{key}", None
    for index, door in enumerate(doors):
        used = [(k, getattr(door, k)) for k in _PIN_KEYS if getattr(door, k) is not None]
        if door.reader and door.reader.type == "mfrc522":
            used.append(("reader.reset_pin", door.reader.reset_pin))
        if door.keypad is not None:
            used += [(f"keypad.row_pins[{i}]", p) for i, p in enumerate(door.keypad.row_pins)]
            used += [(f"keypad.column_pins[{i}]", p) for i, p in enumerate(door.keypad.column_pins)]
        for key, pin in used:
            yield f"doors[{index}].{key}", pin, pin, f"doors[{index}].{key}", None


def _ports(doors: list[DoorConfig]):
    """(key, value, port, part) for each reader, keypad and display that needs a port or bus address of its own."""
    for index, door in enumerate(doors):
        reader, display = door.reader, door.display
        if reader is not None:
            port = (f"spi{reader.spi_bus}.{reader.spi_device}" if reader.type == "mfrc522"
                    else "stdin" if reader.type == "stdin" else _port(reader.device or ""))
            value = port if reader.type in ("mfrc522", "stdin") else reader.device
            yield f"doors[{index}].reader", value, port, "reader"
        if door.keypad is not None and door.keypad.device is not None:
            yield f"doors[{index}].keypad", door.keypad.device, _port(door.keypad.device), "keypad"
        if display is not None and display.device is not None:
            yield f"doors[{index}].display", display.device, _port(display.device), "display"
        if display is not None and display.type == "ssd1306":
            address = f"i2c{display.i2c_port}@0x{display.i2c_address:02x}"
            yield f"doors[{index}].display", address, address, "display"


def _port(device: str) -> str:
    """One name per port: a link (/dev/serial/by-id/…) is followed, and the GPIO UART's names are one.

    A pyserial URL (loop://, socket://host:port) is kept as written.
    """
    if "://" in device or "\0" in device:  # a NUL byte cannot be in a path; opening it will say so
        return device
    path = os.path.realpath(device)
    return "the GPIO UART" if device in GPIO_UART or path in GPIO_UART else path


def load(path: str | Path = DEFAULT_PATH) -> Config:
    """Read and check a config file; raise ConfigError naming the file for any problem."""
    path = Path(path)
    return parse(_read(path), path)


def _read(path: Path) -> dict:
    """The file as TOML data, or ConfigError saying why it cannot be read."""
    try:
        # A byte order mark (Windows editors add one) is not TOML; drop it rather
        # than report an invisible "invalid statement" at line 1, column 1.
        text = path.read_bytes().decode("utf-8").removeprefix("\ufeff")
    except FileNotFoundError:
        raise ConfigError(path, [Problem("(file)", str(path), "file not found")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [Problem("(file)", f"byte {exc.start}", "the file must be UTF-8 text")]) from None
    except OSError as exc:
        raise ConfigError(path, [Problem("(file)", str(path), f"cannot be read: {exc.strerror}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [Problem("(syntax)", str(exc), "the file must be valid TOML")]) from None
    except RecursionError:
        raise ConfigError(path, [Problem("(syntax)", "arrays or tables nested too deeply", "the file must be valid TOML")]) from None
    return data


def load_with_central(path: str | Path = DEFAULT_PATH, *, required: bool = False) -> tuple[Config, CentralConfig | None]:
    """``load``, plus the ``[central]`` section (None when the branch has no central service).

    ``required`` is for ``omaovi sync``, which has nothing to do without it and
    says so the same way as any other config problem.
    """
    path = Path(path)
    config, sections = load_sections(path)
    if required and sections.central is None:
        raise ConfigError(path, [Problem("central", _MISSING, "required table for omaovi sync, with at least base_url and token_file")])
    return config, sections.central


def load_sections(path: str | Path = DEFAULT_PATH) -> tuple[Config, Sections]:
    """``load``, plus the optional sections (``[central]``, ``[sip2]``); each None when left out."""
    path = Path(path)
    return parse_sections(_read(path), path)
