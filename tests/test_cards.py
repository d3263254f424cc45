"""Card numbers and card keys: the same card must give the same key on every reader,
at every branch and at the consortium's central service."""

import hashlib
import hmac
import re
from pathlib import Path

import pytest

from device.cards import CardNumberError, card_key, load_consortium_key, mask_numbers, normalize, uid_to_number
from device.cli import main

#: The consortium key of the published test vectors (32 bytes).
VECTOR_KEY = b"omaovi-test-vector-key-000000000"

MIFARE_UID = bytes([0x04, 0xA2, 0x1B, 0x3C])
#: An EM4100 tag: one version/customer byte, then the 32-bit number printed on the tag.
EM4100_UID = bytes([0x01, 0x00, 0x12, 0xD6, 0x87])
#: A 7-byte MIFARE (e.g. DESFire or Ultralight) UID.
LONG_UID = bytes([0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66])


@pytest.mark.parametrize(
    "typed, number",
    [
        ("04A21B3C", "04A21B3C"),
        ("  04a21b3c\r\n", "04A21B3C"),
        ("04:a2 1b-3c", "04A21B3C"),
        ("04.A2.1B.3C", "04A21B3C"),
        ("04/a2/1b/3c", "04A21B3C"),
        ("04_A2\t1B__3C", "04A21B3C"),
        ("0001234567", "0001234567"),
        ("A" * 64, "A" * 64),
    ],
)
def test_normalize_trims_uppercases_and_drops_separators(typed, number):
    assert normalize(typed) == number


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("-:-", id="only-separators"),
        pytest.param("A" * 65, id="65-characters"),
        pytest.param("04A2!B3C", id="punctuation"),
        pytest.param("04A2;1B3C", id="semicolon"),
        pytest.param("04Ä21B3C", id="non-ascii-letter"),
        pytest.param("12ß34", id="sharp-s-that-uppercases-to-SS"),
        pytest.param("ı234", id="dotless-i-that-uppercases-to-I"),
        pytest.param("١٢٣٤", id="arabic-indic-digits"),
    ],
)
def test_normalize_refuses_what_is_not_a_card_number(typed):
    with pytest.raises(CardNumberError, match=r"expected 1-64 letters and digits"):
        normalize(typed)


@pytest.mark.parametrize(
    "uid, uid_format, number",
    [
        # hex: the bytes in chip order, as printed by most library systems for MIFARE.
        (MIFARE_UID, "hex", "04A21B3C"),
        (LONG_UID, "hex", "04112233445566"),
        (bytes([0x04, 0xA2, 0x1B]), "hex", "04A21B"),
        # decimal: the last 4 bytes big-endian; 0x0012D687 = 1234567, the EM4100 print.
        (EM4100_UID, "decimal", "0001234567"),
        (MIFARE_UID, "decimal", "0077732668"),  # 0x04A21B3C
        (LONG_UID, "decimal", "0860116326"),  # 0x33445566
        # decimal_reversed: the first 4 bytes little-endian.
        (MIFARE_UID, "decimal_reversed", "1008443908"),  # 0x3C1BA204
        (LONG_UID, "decimal_reversed", "0857870596"),  # 0x33221104
    ],
)
def test_uid_to_number(uid, uid_format, number):
    assert uid_to_number(uid, uid_format) == number


@pytest.mark.parametrize(
    "uid, uid_format",
    [(b"", "hex"), (b"", "decimal"), (bytes([0x04, 0xA2, 0x1B]), "decimal"), (bytes([0x04, 0xA2, 0x1B]), "decimal_reversed")],
)
def test_uid_too_short_for_its_format_is_not_a_card(uid, uid_format):
    with pytest.raises(CardNumberError):
        uid_to_number(uid, uid_format)


def test_the_uid_format_table_in_the_docs_is_right():
    docs = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = re.findall(r'^\| `"(\w+)"` \| [^|]+ \| `(\w+)` \| `(\w+)`', docs, re.M)
    assert [fmt for fmt, _, _ in rows] == ["hex", "decimal", "decimal_reversed"]
    for uid_format, mifare, em4100 in rows:
        assert (uid_to_number(MIFARE_UID, uid_format), uid_to_number(EM4100_UID, uid_format)) == (mifare, em4100)


def test_unknown_uid_format_names_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed: hex, decimal, decimal_reversed"):
        uid_to_number(MIFARE_UID, "octal")


@pytest.mark.parametrize("number", ["04A21B3C", "0001234567", "X" * 64])
def test_card_key_is_hmac_sha256_of_the_normalized_number(number):
    expected = hmac.new(VECTOR_KEY, number.encode("ascii"), hashlib.sha256).hexdigest()
    assert card_key(VECTOR_KEY, number) == expected
    assert card_key(VECTOR_KEY, f" {number.lower()}\n") == expected


@pytest.mark.parametrize(
    "number, expected",
    [
        # Pinned literally: the central service computes the same keys, so any change
        # in normalisation or hashing would lock every patron out.
        ("04:a2 1b-3c", "9606544db13aadf779c5564bf178d5274ed1c524db99cf4d1a73adbf913c736a"),
        ("0001234567", "714fdf9d7e0f78416e10a221c25336496869d723598ec218f26b8f01670a4107"),
    ],
)
def test_card_key_test_vectors(number, expected):
    assert card_key(VECTOR_KEY, number) == expected


def test_a_card_read_by_chip_and_typed_by_hand_gets_the_same_key():
    assert card_key(VECTOR_KEY, "04:a2 1b-3c") == card_key(VECTOR_KEY, "04A21B3C")
    assert card_key(VECTOR_KEY, uid_to_number(MIFARE_UID, "hex")) == card_key(VECTOR_KEY, "04 A2 1B 3C")
    assert card_key(VECTOR_KEY, uid_to_number(EM4100_UID, "decimal")) == card_key(VECTOR_KEY, "0001234567")


def test_card_key_depends_on_the_number_and_the_consortium_key():
    other_key = b"another-consortium-key-000000000"
    assert card_key(VECTOR_KEY, "04A21B3C") != card_key(VECTOR_KEY, "04A21B3D")
    assert card_key(VECTOR_KEY, "04A21B3C") != card_key(other_key, "04A21B3C")


def test_card_key_refuses_garbage_instead_of_hashing_it():
    with pytest.raises(CardNumberError):
        card_key(VECTOR_KEY, "04A2!")


def test_consortium_key_file_surrounding_whitespace_is_ignored(tmp_path):
    path = tmp_path / "consortium.key"
    path.write_bytes(b"  " + VECTOR_KEY + b"\r\n\n")
    assert load_consortium_key(path) == VECTOR_KEY


@pytest.mark.parametrize(
    "content, length",
    [(b"k" * 15, 15), (b"   short-key   \n", 9), (b"\n", 0)],
)
def test_a_short_consortium_key_is_refused(tmp_path, content, length):
    path = tmp_path / "consortium.key"
    path.write_bytes(content)
    with pytest.raises(ValueError) as caught:
        load_consortium_key(path)
    assert str(caught.value) == f"{path}: the consortium key is {length} bytes; it must be at least 16"


def test_a_16_byte_consortium_key_is_enough(tmp_path):
    path = tmp_path / "consortium.key"
    path.write_bytes(b"k" * 16)
    assert load_consortium_key(path) == b"k" * 16


@pytest.fixture
def branch(tmp_path):
    (tmp_path / "omaovi.toml").write_text(
        'branch = "kallio"\ndatabase = "omaovi.db"\nconsortium_key_file = "consortium.key"\n'
        '[[doors]]\nid = "entrance"\nkind = "entrance"\nlock_pin = 17\n'
    )
    return tmp_path


def test_card_key_command_prints_the_test_vector(branch, capsys):
    (branch / "consortium.key").write_bytes(VECTOR_KEY + b"\n")
    assert main(["card-key", "04:a2 1b-3c", "--config", str(branch / "omaovi.toml")]) == 0
    assert capsys.readouterr().out == "9606544db13aadf779c5564bf178d5274ed1c524db99cf4d1a73adbf913c736a\n"


def test_card_key_command_explains_a_short_key(branch, capsys):
    (branch / "consortium.key").write_bytes(b"too-short\n")
    assert main(["card-key", "04A21B3C", "--config", str(branch / "omaovi.toml")]) == 1
    assert capsys.readouterr().err == (
        f"omaovi card-key: {branch / 'consortium.key'}: the consortium key is 9 bytes; it must be at least 16\n"
    )


def test_the_card_key_test_vectors_in_the_protocol_doc_are_right():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "central-protocol.md").read_text()
    rows = re.findall(r"^\| `([^`]*)` \| `([0-9A-Z]+)` \| `([0-9a-f]{64})` \|$", doc, re.M)
    assert len(rows) == 4
    key = b"omaovi-test-vector-key-000000000"
    for read, normalized, expected in rows:
        assert normalize(read) == normalized
        assert card_key(key, read) == expected


@pytest.mark.parametrize("text, shown", [
    ("12345", "12345"),
    ("123456", "[6 digits]"),
    ("card 4000123412341234 on line 7", "card [16 digits] on line 7"),
    ("a1234567b and 99", "a[7 digits]b and 99"),
])
def test_error_texts_hide_runs_of_six_or_more_digits(text, shown):
    assert mask_numbers(text) == shown
