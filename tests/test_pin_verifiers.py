"""PIN verifiers arriving from the central service and the patron CSV: peppered on arrival, never the PIN."""

import json
from datetime import datetime, timezone

import pytest

from device.pins import make_verifier, pin_matches
from sync.central_parse import MalformedAnswer, parse_patron_page
from sync.patrons_csv import PatronCsvError, parse_patrons
from tests.central_server import CentralServer
from tests.test_central_sync import TOKEN, Branch, key, patron

PEPPER = b"kallio-branch-pepper-0123456789"
FETCHED_AT = datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)
VERIFIER = make_verifier("4321", "Zx9Qsalt", 10_000)
PIN_SECTION = """
[pin]
pepper_file = "pin.pepper"

[doors.keypad]
type = "serial"
device = "/dev/ttyUSB1"
"""


def page(*items) -> bytes:
    return json.dumps({"items": list(items), "cursor": "c1", "more": False}).encode()


def test_a_verifier_from_the_central_service_is_kept_peppered():
    [entry] = parse_patron_page(page(patron(1, pin_verifier=VERIFIER)), FETCHED_AT, PEPPER).upserts
    assert entry.pin_verifier != VERIFIER and pin_matches("4321", entry.pin_verifier, PEPPER)
    assert not pin_matches("4321", entry.pin_verifier, b"a-different-branch-pepper-00000")


def test_a_branch_that_asks_no_pin_keeps_no_verifier():
    [entry] = parse_patron_page(page(patron(1, pin_verifier=VERIFIER)), FETCHED_AT).upserts
    assert entry.pin_verifier is None


def test_a_patron_without_a_verifier_is_still_a_patron():
    [entry] = parse_patron_page(page(patron(1), patron(2, pin_verifier=None)), FETCHED_AT, PEPPER).upserts[:1]
    assert entry.pin_verifier is None and entry.self_service


def test_a_malformed_verifier_rejects_the_page_without_quoting_it():
    with pytest.raises(MalformedAnswer) as caught:
        parse_patron_page(page(patron(1), patron(2, pin_verifier="md5$secretish")), FETCHED_AT, PEPPER)
    assert str(caught.value).startswith("items[1].pin_verifier: expected pbkdf2_sha256$")
    assert "secretish" not in str(caught.value)


def test_central_sync_stores_only_the_peppered_verifier(tmp_path):
    (tmp_path / "pin.pepper").write_bytes(PEPPER)
    with CentralServer(token=TOKEN, page_size=2) as central:
        branch = Branch(tmp_path, central, central_extra=PIN_SECTION)
        central.patrons.put(patron(1, pin_verifier=VERIFIER), patron(2))
        assert branch.sync()["patrons"] is None
        stored = branch.store.patron(key(1)).pin_verifier
        assert pin_matches("4321", stored, PEPPER)
        assert VERIFIER.split("$")[3].encode() not in branch.config.database.read_bytes()
        branch.store.close()


CSV_KEY = b"omaovi-test-vector-key-000000000"


def test_a_csv_column_carries_verifiers():
    text = f"card_number,self_service,pin_verifier\n10000001,1,{VERIFIER}\n10000002,1,\n"
    with_pin, without = parse_patrons(text, CSV_KEY, FETCHED_AT, pin_pepper=PEPPER)
    assert pin_matches("4321", with_pin.pin_verifier, PEPPER) and without.pin_verifier is None
    assert all(p.pin_verifier is None for p in parse_patrons(text, CSV_KEY, FETCHED_AT))


def test_a_bad_verifier_in_the_csv_names_its_line():
    with pytest.raises(PatronCsvError) as caught:
        parse_patrons("card_number,pin_verifier\n10000001,1234\n", CSV_KEY, FETCHED_AT, pin_pepper=PEPPER)
    assert caught.value.problems == ["line 2, pin_verifier: expected pbkdf2_sha256$<iterations>$<salt>$<base64 hash>"]


def test_the_protocol_example_carries_a_verifier_the_branch_accepts():
    from tests.test_central_sync import example

    [first] = parse_patron_page(example("patrons-page"), FETCHED_AT, PEPPER).upserts
    assert pin_matches("4321", first.pin_verifier, PEPPER)
