"""Every parser of outside input, fed random and half-right input.

Serial lines, the library system, the central service, Kirkanta, CSV exports and
the config file all come from outside the device, and any of them can be broken,
cut short or hostile. For each parser the rule is the same: its own error or a
valid result. Any other exception would escape into the door loop or a sync round
as a crash or a silently skipped round, and a result the input did not say (a
patron allowed self-service, a self-service hour) would open the door for the
wrong person. Inputs are random bytes and text, and structured input with random
values in the places a parser looks at, which is where the wrong grants hide.

The example counts come from the hypothesis profile in tests/conftest.py;
``pytest --long`` runs 10,000 per test.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from datetime import date, datetime, timezone
from functools import reduce
from operator import xor
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from device.cards import CardNumberError, card_key
from device.config import GPIO_PINS, Config, ConfigError, load, parse_sections
from device.readers.base import CardRead, GarbledRead
from device.readers.framing import MAX_LINE, LineFramer, Rdm6300Framer
from device.schedule import Schedule
from sync.central_parse import (
    MalformedAnswer,
    parse_event_ack,
    parse_hours_page,
    parse_patron_page,
    parse_reservation_page,
)
from sync.kirkanta import KirkantaError, parse_schedules
from sync.patrons_csv import PatronCsvError, parse_patrons
from sync.sip2 import STATUS_BITS, Sip2Client, Sip2Config, Sip2Error, Sip2Result, checksum

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
KEY = b"fuzzing-consortium-key-000000000"
#: Nesting far deeper than any real answer, as a broken or hostile server could send it.
DEEP_JSON = b"[" * 100_000

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def mutated(data: bytes, edits) -> bytes:
    """``data`` with bytes overwritten, inserted or deleted at drawn places."""
    out = bytearray(data)
    for kind, where, value in edits:
        if not out and kind != "insert":
            continue
        at = where % (len(out) + 1)
        if kind == "insert":
            out[at:at] = bytes([value])
        elif kind == "set":
            out[at % len(out)] = value
        else:
            del out[at % len(out)]
    return bytes(out)


byte_edits = st.lists(
    st.tuples(st.sampled_from(["insert", "set", "delete"]), st.integers(0, 10_000), st.integers(0, 255)), max_size=6
)


# --- serial framings --------------------------------------------------------------

RDM_FRAME = re.compile(rb"\x02([0-9A-Fa-f]{12})\x03")


def rdm_frame(uid: bytes, check: int) -> bytes:
    return b"\x02" + (uid + bytes([check])).hex().upper().encode() + b"\x03"


rdm_pieces = st.one_of(
    st.binary(min_size=5, max_size=5).map(lambda uid: rdm_frame(uid, reduce(xor, uid))),
    st.tuples(st.binary(min_size=5, max_size=5), st.integers(0, 255)).map(lambda t: rdm_frame(*t)),
    st.sampled_from([b"\x02", b"\x03", b"0", b"A", b"f", b"G", b"\r\n"]),
    st.binary(max_size=16),
)
line_pieces = st.one_of(
    st.from_regex(rb"\A[0-9A-Za-z :\-]{1,70}\Z"),
    st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"\t", b"\x00", b"\x7f", b"\xff"]),
    st.binary(max_size=80),
)


def feed_in_chunks(framer, data: bytes, cuts: list[int]) -> list:
    results, start = [], 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        results += framer.feed(data[start:cut])
        start = cut
    return results


def valid_rdm6300_uids(data: bytes) -> list[bytes]:
    """The UIDs of the byte-exact frames in the stream with a right checksum."""
    uids = []
    for match in RDM_FRAME.finditer(data):
        values = bytes.fromhex(match.group(1).decode())
        if reduce(xor, values[:5]) == values[5]:
            uids.append(values[:5])
    return uids


def complete_printable_lines(data: bytes) -> list[str]:
    """The ended lines of at most MAX_LINE bytes that are printable once trimmed."""
    lines = re.split(rb"[\r\n]", data)[:-1]  # the last piece has no line end yet
    texts = [raw.strip() for raw in lines if len(raw) <= MAX_LINE]
    return [t.decode() for t in texts if t and all(0x20 <= b < 0x7F for b in t)]


@given(st.lists(rdm_pieces, max_size=12).map(b"".join), st.lists(st.integers(0, 500), max_size=6))
def test_rdm6300_cards_come_only_from_exact_frames_with_a_right_checksum(data, cuts):
    results = feed_in_chunks(Rdm6300Framer(), data, cuts)
    assert all(isinstance(r, (CardRead, GarbledRead)) for r in results)
    assert [r.uid for r in results if isinstance(r, CardRead)] == valid_rdm6300_uids(data)


@given(st.lists(line_pieces, max_size=12).map(b"".join), st.lists(st.integers(0, 500), max_size=6))
def test_line_cards_come_only_from_whole_printable_lines(data, cuts):
    results = feed_in_chunks(LineFramer(), data, cuts)
    assert all(isinstance(r, (CardRead, GarbledRead)) for r in results)
    assert [r.text for r in results if isinstance(r, CardRead)] == complete_printable_lines(data)


# --- SIP2 replies -----------------------------------------------------------------

CARD = "10000001"
#: The fixed part of a 64 reply after the status: language, date and time, six counts.
FIXED_TAIL = "000" + "20261125    120000" + "0000" * 6


class ScriptedSocket:
    """A connected library system that sends these bytes, then nothing until the timeout."""

    def __init__(self, data: bytes):
        self.data = data

    def settimeout(self, timeout):
        pass

    def sendall(self, data):
        pass

    def recv(self, size):
        if not self.data:
            raise TimeoutError
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk

    def close(self):
        pass


def sip2_answer(config: Sip2Config, reply: bytes) -> Sip2Result:
    """A patron check whose reply is ``reply``, read the way the device reads a real one."""
    client = Sip2Client(config)
    client._sock = ScriptedSocket(reply)  # an open connection: no login, straight to the 63/64
    return client.patron_information(CARD)


def with_trailer(message: bytes, sequence: int = 0) -> bytes:
    prefix = message + f"AY{sequence}AZ".encode()
    return prefix + checksum(prefix).encode() + b"\r"


KOHA = Sip2Config(host="127.0.0.1", port=6001, username="u", password="p", institution="i",
                  profile="koha-suomi", allowed_classes=("AIKUINEN",), timeout=1)
GENERIC = Sip2Config(host="127.0.0.1", port=6001, username="u", password="p", institution="i",
                     profile="evergreen", timeout=1)

field_values = st.one_of(
    st.sampled_from(["Y", "N", "0", "1", "AIKUINEN", "LAPSI", CARD, "20991231", "2099123", "", " Y"]),
    st.text(st.characters(blacklist_characters="|\r"), max_size=12),
)
sip2_fields = st.lists(
    st.tuples(st.sampled_from(["AA", "BL", "CQ", "PA", "PC", "AE", "BZ", "Z9", "aa", "A", ""]), field_values),
    max_size=7,
)


@st.composite
def patron_replies(draw):
    """A 64 reply with a right trailer and a drawn status and fields: what the server "said"."""
    status = draw(st.one_of(st.text("Y ", min_size=14, max_size=14), st.text(max_size=16)))
    fields = draw(sip2_fields)
    fixed = draw(st.one_of(st.just(FIXED_TAIL), st.text(max_size=45)))
    body = ("64" + status + fixed).encode("utf-8", "surrogatepass") + b"".join(
        f"{code}{value}|".encode("utf-8", "surrogatepass") for code, value in fields
    )
    return with_trailer(body), status, fields


def said(fields, code):
    """The one value the reply gave ``code``, or None if it gave none or several."""
    values = [value for name, value in fields if name == code]
    return values[0] if len(values) == 1 else None


@given(st.sampled_from([KOHA, GENERIC]), patron_replies())
@example(KOHA, (with_trailer(b"64" + b" " * 14 + FIXED_TAIL.encode() + b"AA10000001|BLY|PA0|PCAIKUINEN|"), " " * 14,
                [("AA", CARD), ("BL", "Y"), ("PA", "0"), ("PC", "AIKUINEN")]))
@example(GENERIC, (with_trailer(b"64" + b" " * 14 + FIXED_TAIL.encode() + b"AA10000001|BLY|PA2099123|"), " " * 14,
                   [("AA", CARD), ("BL", "Y"), ("PA", "2099123")]))
def test_sip2_grants_self_service_only_when_the_reply_says_so(config, drawn):
    reply, status, fields = drawn
    try:
        result = sip2_answer(config, reply)
    except Sip2Error:
        return
    check_answer(config, status, fields, result)


def check_answer(config: Sip2Config, status: str, fields: list[tuple[str, str]], result: Sip2Result) -> None:
    """The answer is about this card, with the expiry sent, and grants only what the reply said."""
    assert said(fields, "AA") == CARD, "a reply about another card must not be used"
    if result.valid_until is not None:
        assert said(fields, "PA") == result.valid_until.strftime("%Y%m%d"), "the expiry date must be the one sent"
    if not result.self_service:
        return
    assert said(fields, "BL") == "Y"
    assert len(status) == 14 and set(status) <= {"Y", " "}
    assert not any(bit == "Y" and name in config.blocking_status for name, bit in zip(STATUS_BITS, status))
    if config.profile == "koha-suomi":
        assert said(fields, "PA") == "0"
        assert said(fields, "PC") in config.allowed_classes


@given(
    st.one_of(
        st.binary(max_size=120),
        st.tuples(st.sampled_from([b"96", b"96AZ", b"64", b"94", b"AY0AZ"]), st.binary(max_size=80)).map(b"".join),
    ).map(lambda reply: reply + b"\r"),
)
@example(b"96AZzzzz\r")
def test_any_sip2_reply_is_a_sip2_error_or_an_answer(reply):
    try:
        result = sip2_answer(KOHA, reply)
    except Sip2Error:
        return
    assert isinstance(result, Sip2Result)


@given(byte_edits)
def test_a_damaged_sip2_grant_is_refused_or_read_for_what_it_now_says(edits):
    """The SIP2 checksum is a byte sum, so a moved byte or an added NUL passes it;
    what the damaged reply then says must still decide."""
    good = with_trailer(b"64" + b" " * 14 + FIXED_TAIL.encode() + b"AA10000001|BLY|PA0|PCAIKUINEN|")
    reply = mutated(good[:-1], edits) + b"\r"
    try:
        result = sip2_answer(KOHA, reply)
    except Sip2Error:
        return
    message = reply[: -len(b"AY0AZ0000\r")]
    status = message[2:16].decode("latin-1")
    fields = [(piece[:2].decode("latin-1"), piece[2:].decode("latin-1")) for piece in message[61:].split(b"|") if piece]
    check_answer(KOHA, status, fields, result)


# --- central service JSON -------------------------------------------------------

CARD_KEY = "ab" * 32
maybe = lambda right: st.one_of(right, json_values)  # noqa: E731 - reads as a type in the strategies below

patron_items = st.fixed_dictionaries(
    {"card_key": maybe(st.sampled_from([CARD_KEY, "cd" * 32]))},
    optional={
        "self_service": maybe(st.booleans()),
        "staff": maybe(st.booleans()),
        "blocked_reason": maybe(st.none() | st.just("fines")),
        "valid_until": maybe(st.none() | st.dates().map(date.isoformat)),
        "age_ok_from": maybe(st.none() | st.dates().map(date.isoformat)),
        "deleted": maybe(st.booleans()),
    },
)
reservation_items = st.fixed_dictionaries(
    {
        "id": maybe(st.just("r-1")),
        "resource": maybe(st.just("booth-1")),
        "card_key": maybe(st.just(CARD_KEY)),
        "begin": maybe(st.datetimes(timezones=st.just(timezone.utc)).map(datetime.isoformat)),
        "end": maybe(st.datetimes(timezones=st.just(timezone.utc)).map(datetime.isoformat)),
        "state": maybe(st.sampled_from(["confirmed", "cancelled", "requested"])),
    }
)


def pages(items):
    return st.fixed_dictionaries(
        {"items": maybe(st.lists(maybe(items), max_size=4))},
        optional={"cursor": maybe(st.just("c-1")), "more": maybe(st.booleans())},
    )


def as_body(document, edits=()) -> bytes:
    return mutated(json.dumps(document).encode(), edits)


random_bodies = st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()))


@given(st.one_of(random_bodies, st.tuples(pages(patron_items), byte_edits).map(lambda t: as_body(*t))))
@example(DEEP_JSON)
def test_central_answers_are_malformed_or_valid(body):
    for parse in (lambda b: parse_patron_page(b, NOW), parse_reservation_page, parse_event_ack, parse_hours_page):
        try:
            parse(body)
        except MalformedAnswer:
            pass


@given(pages(patron_items))
def test_central_patron_gets_only_the_permissions_its_item_gave(document):
    try:
        page = parse_patron_page(json.dumps(document).encode(), NOW)
    except MalformedAnswer:
        return
    kept = [item for item in document["items"] if item.get("deleted") is not True]
    assert len(kept) == len(page.upserts)
    for item, patron in zip(kept, page.upserts):
        assert patron.card_key == item["card_key"]
        assert patron.self_service is item["self_service"]
        assert patron.staff is item["staff"]
        assert patron.blocked_reason == item["blocked_reason"]
        assert patron.fetched_at == NOW


@given(pages(reservation_items))
def test_central_reservation_is_confirmed_only_when_its_item_says_so(document):
    try:
        page = parse_reservation_page(json.dumps(document).encode())
    except MalformedAnswer:
        return
    for item, reservation in zip(document["items"], page.reservations, strict=True):
        assert reservation.state == item["state"] in ("confirmed", "cancelled")
        assert reservation.end > reservation.begin


# --- Kirkanta (and the central service's hours, which use the same items) -------

clock_texts = st.one_of(
    st.sampled_from(["00:00", "07:00", "10:00", "23:59", "24:00", "25:00", "7:5", "12:60", " 08:00"]),
    st.text(max_size=6),
)
time_entries = st.fixed_dictionaries(
    {"from": maybe(clock_texts), "to": maybe(clock_texts), "status": st.one_of(st.sampled_from([0, 1, 2, 3, True]), json_values)}
)
day_items = st.fixed_dictionaries(
    {"date": maybe(st.dates(date(2026, 1, 1), date(2027, 12, 31)).map(date.isoformat)), "closed": maybe(st.booleans())},
    optional={"times": maybe(st.none() | st.lists(maybe(time_entries), max_size=4))},
)
schedules = st.fixed_dictionaries({"items": maybe(st.lists(maybe(day_items), max_size=5))})


def check_schedule(days, document) -> None:
    """The days make a valid schedule, and self-service only where an item gave status 2."""
    Schedule(weekly={}, exceptions=days)
    by_date = {item["date"]: item for item in document["items"]}
    for day, periods in days.items():
        item = by_date[day.isoformat()]
        if item["closed"] is True:
            assert periods == ()
        if any(p.mode == "self_service" for p in periods):
            assert any(type(t["status"]) is int and t["status"] == 2 for t in item["times"])


@given(st.one_of(random_bodies, st.tuples(schedules, byte_edits).map(lambda t: as_body(*t))))
@example(DEEP_JSON)
def test_kirkanta_answers_are_an_error_or_a_schedule(body):
    try:
        days = parse_schedules(body)
    except KirkantaError:
        return
    Schedule(weekly={}, exceptions=days)


@given(schedules)
def test_kirkanta_self_service_hours_come_only_from_status_2(document):
    try:
        days = parse_schedules(json.dumps(document))
    except KirkantaError:
        return
    check_schedule(days, document)


@given(st.fixed_dictionaries({"items": maybe(st.lists(maybe(day_items), max_size=5))}, optional={"more": maybe(st.booleans())}))
def test_central_hours_go_through_the_kirkanta_checks(document):
    """The hours sync hands the page's items to the Kirkanta parser, as sync/central.py does."""
    try:
        items, _cursor, _more = parse_hours_page(json.dumps(document).encode())
        days = parse_schedules({"items": items})
    except (MalformedAnswer, KirkantaError):
        return
    check_schedule(days, document)


# --- patron CSV -----------------------------------------------------------------

csv_cells = st.one_of(
    st.sampled_from(["10000001", "04:a2:1b:3c", "1", "0", "yes", "ei", "kyllä", "2099-01-01", "", "x", "true"]),
    st.text(max_size=10),
)
csv_headers = st.lists(
    st.sampled_from(["card_number", "self_service", "staff", "valid_until", "age_ok_from", "blocked_reason", "extra"]),
    min_size=1, max_size=6, unique=True,
)
TRUE_CELLS = {"1", "true", "yes", "y", "kyllä", "ja"}


@st.composite
def csv_files(draw):
    """A CSV file written properly by csv.writer, with the rows as written."""
    header = draw(csv_headers)
    rows = draw(st.lists(st.lists(csv_cells, min_size=len(header), max_size=len(header)), max_size=5))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=draw(st.sampled_from([",", ";", "\t"])))
    writer.writerows([header] + rows)
    return out.getvalue(), [dict(zip(header, row)) for row in rows]


def card_key_or_none(row) -> str | None:
    try:
        return card_key(KEY, row.get("card_number", ""))
    except CardNumberError:
        return None


def granted_by_rows(rows, column) -> set[str]:
    """The card keys of the rows that set ``column`` to a yes."""
    return {card_key_or_none(row) for row in rows if row.get(column, "").strip().lower() in TRUE_CELLS} - {None}


@given(st.one_of(st.text(max_size=300), csv_files().map(lambda f: f[0])))
@example("card_number\n12\r34\n")
@example('card_number\n"' + "1" * 200_000 + '"\n')
def test_any_patron_csv_is_refused_with_its_problems_or_read(text):
    try:
        patrons = parse_patrons(text, KEY, NOW)
    except PatronCsvError as exc:
        assert exc.problems
        return
    assert len({p.card_key for p in patrons}) == len(patrons)


@given(csv_files())
def test_csv_grants_self_service_and_staff_only_to_rows_that_say_so(drawn):
    text, rows = drawn
    try:
        patrons = parse_patrons(text, KEY, NOW)
    except PatronCsvError:
        return
    assert {p.card_key for p in patrons if p.self_service} <= granted_by_rows(rows, "self_service")
    assert {p.card_key for p in patrons if p.staff} <= granted_by_rows(rows, "staff")
    for patron in patrons:
        assert any(card_key_or_none(row) == patron.card_key for row in rows)


# --- the config file ------------------------------------------------------------

toml_values = st.recursive(
    st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=20) | st.dates() | st.times()
    | st.datetimes() | st.sampled_from(["hex", "serial", "rdm6300", "booth", "72h", "0.0.0.0", "koha-suomi", "x.toml"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)

VALID_CONFIG = {
    "branch": "fuzz",
    "database": "omaovi.db",
    "consortium_key_file": "key",
    "cards": {"uid_format": "hex"},
    "policy": {"max_offline_age": "72h"},
    "web": {"port": 8080},
    "central": {"base_url": "https://central.example.fi/api", "token_file": "token"},
    "sip2": {"host": "sip2.example", "port": 6001, "username": "ovi", "password_file": "sip2.pw",
             "institution": "kirjasto", "profile": "koha-suomi"},
    "doors": [
        {"id": "entrance", "kind": "entrance", "lock_pin": 17, "contact_pin": 27,
         "reader": {"type": "serial", "device": "/dev/ttyUSB0", "framing": "rdm6300"}},
        {"id": "booth", "kind": "booth", "resource": "booth-1", "lock_pin": 5,
         "reader": {"type": "mfrc522", "reset_pin": 25}},
    ],
}
#: Where in the file a mutation lands, and the keys each place knows (plus random ones).
CONFIG_PLACES = {
    (): ["branch", "timezone", "database", "consortium_key_file", "cards", "policy", "web", "central", "sip2", "doors"],
    ("cards",): ["uid_format"],
    ("policy",): ["staffed_entrance", "booth_early_minutes", "no_show_minutes", "max_offline_age", "event_retention_days"],
    ("web",): ["host", "port", "secure_cookies", "session_idle_minutes", "secret_key_file", "metrics_allow", "board_frame_ancestors"],
    ("central",): ["base_url", "token_file", "timeout", "interval", "max_response_bytes"],
    ("sip2",): ["host", "port", "tls", "tls_ca_file", "username", "institution", "profile", "allowed_classes",
                "blocking_status", "timeout", "breaker_failures"],
    ("doors", 0): ["id", "kind", "lock_pin", "contact_pin", "exit_button_pin", "led_pin", "unlock_seconds", "resource", "reader"],
    ("doors", 1): ["id", "kind", "lock_pin", "resource", "held_open_seconds", "lock_active_high"],
    ("doors", 0, "reader"): ["type", "device", "framing", "baudrate", "dedupe_seconds"],
    ("doors", 1, "reader"): ["type", "spi_bus", "spi_device", "reset_pin", "poll_interval", "device"],
}


def mutate_config(draw) -> dict:
    """The valid config with a few keys set to drawn values or removed."""
    data = json.loads(json.dumps(VALID_CONFIG))
    for place in draw.draw(st.lists(st.sampled_from(sorted(CONFIG_PLACES, key=len)), max_size=5)):
        table = data
        for step in place:
            try:
                table = table[step]
            except (KeyError, IndexError, TypeError):
                table = None
                break
        if not isinstance(table, dict):
            continue
        name = draw.draw(st.one_of(st.sampled_from(CONFIG_PLACES[place]), st.text(max_size=8)))
        if draw.draw(st.booleans()):
            table.pop(name, None)
        else:
            table[name] = draw.draw(toml_values)
    return data


def check_config(config: Config) -> None:
    """What the device relies on without checking again: ids and pins unique and in range."""
    assert len({door.id for door in config.doors}) == len(config.doors) >= 1
    pins = [door.lock_pin for door in config.doors] + [
        pin for door in config.doors for pin in (door.contact_pin, door.exit_button_pin, door.led_pin, door.buzzer_pin)
        if pin is not None
    ]
    assert all(pin in GPIO_PINS for pin in pins) and len(set(pins)) == len(pins)
    assert all(door.resource for door in config.doors if door.kind == "booth")


@given(st.data())
def test_config_with_random_values_is_a_config_error_or_a_sound_config(draw):
    data = mutate_config(draw)
    try:
        config, _sections = parse_sections(data, "/etc/omaovi/omaovi.toml")
    except ConfigError as exc:
        assert exc.problems and str(exc)
        return
    check_config(config)


toml_lines = st.one_of(
    st.sampled_from(['[[doors]]', '[doors.reader]', '[policy]', '[sip2]', 'id = "entrance"', 'kind = "entrance"',
                     'lock_pin = 17', 'branch = "x"', 'database = "db"', 'consortium_key_file = "k"', 'type = "stdin"',
                     'a = [[[[1]]]]', 'x = {y = {z = 1}}', 'd = 2026-11-25T12:00:00Z', 'p = 1e400', '"\\u0000" = 1']),
    st.text(max_size=30),
)


@pytest.fixture(scope="module")
def config_dir():
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


@given(content=st.one_of(
    st.text(max_size=200).map(str.encode),
    st.lists(toml_lines, max_size=12).map(lambda lines: "\n".join(lines).encode()),
    st.binary(max_size=200),  # not UTF-8, a byte order mark, NUL bytes
))
@example(content=b"a = " + b"[" * 5000)
@example(content=b"a = " + b"{b = " * 5000)
def test_any_config_file_is_a_config_error_or_a_sound_config(config_dir, content):
    path = config_dir / "omaovi.toml"
    path.write_bytes(content)
    try:
        config = load(path)
    except ConfigError as exc:
        assert exc.problems and str(exc)
        return
    check_config(config)
