"""Card numbers and card keys.

A card is known to the library system by one canonical number. Readers see the
same card in different shapes (UID bytes from an RFID chip, ten decimal digits
typed by a keyboard-wedge reader, a barcode), so every read is turned into the
canonical number first and only then hashed. The hash, ``card_key``, is the only
form of a card that is ever stored; the consortium's central service computes the
same key from the same number, so both sides agree without sharing raw numbers.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

#: Separators people and readers put inside card numbers; they carry no meaning.
_SEPARATORS = re.compile(r"[\s\-:._/]+")
_VALID = re.compile(r"^[0-9A-Z]{1,64}$")

#: How a UID read from a chip becomes the number the library system knows.
UID_FORMATS = ("hex", "decimal", "decimal_reversed")

MIN_KEY_BYTES = 16
#: Six or more digits in a row may be a card number (or most of one).
_LONG_NUMBER = re.compile(r"\d{6,}")


class CardNumberError(ValueError):
    """A read that cannot be a card number. It is logged and never counts as a card."""


def clean(number: str) -> str:
    """Trim and strip separators, keeping the letters' case as read: the library
    system may look ids up case-sensitively (SIP2 sends this form).

    Raises CardNumberError for anything left that is not 1-64 letters and digits.
    """
    cleaned = _SEPARATORS.sub("", number.strip())
    # isascii() first: upper() turns some non-ASCII letters into ASCII ones ("ß" -> "SS").
    if not (cleaned.isascii() and _VALID.match(cleaned.upper())):
        raise CardNumberError(f"not a card number: {number!r} (expected 1-64 letters and digits)")
    return cleaned


def normalize(number: str) -> str:
    """The canonical number: cleaned and uppercased, so that '04:a2-1b 3c' and '04A21B3C' match."""
    return clean(number).upper()


def uid_to_number(uid: bytes, uid_format: str) -> str:
    """Turn chip UID bytes into the canonical card number.

    - ``hex``: the UID bytes in the order the chip sends them, as uppercase hex
      (``04A21B3C``). This is what most library systems store for MIFARE cards.
    - ``decimal``: the last four UID bytes read as one big-endian number, zero-padded
      to ten digits. This is the number printed on EM4100 tags and typed by most
      125 kHz keyboard-wedge readers.
    - ``decimal_reversed``: the first four UID bytes read as one little-endian number,
      zero-padded to ten digits. This is what many 13.56 MHz keyboard-wedge readers
      type for a MIFARE card.
    """
    if not uid:
        raise CardNumberError("empty UID")
    if uid_format == "hex":
        return uid.hex().upper()
    if len(uid) < 4:
        raise CardNumberError(f"UID {uid.hex()} is shorter than 4 bytes")
    if uid_format == "decimal":
        return f"{int.from_bytes(uid[-4:], 'big'):010d}"
    if uid_format == "decimal_reversed":
        return f"{int.from_bytes(uid[:4], 'little'):010d}"
    raise ValueError(f"unknown uid_format {uid_format!r}; allowed: {', '.join(UID_FORMATS)}")


def card_key(consortium_key: bytes, number: str) -> str:
    """HMAC-SHA256 of the normalized card number, as lowercase hex."""
    return hmac.new(consortium_key, normalize(number).encode("ascii"), hashlib.sha256).hexdigest()


def load_consortium_key(path: str | Path) -> bytes:
    """Read the consortium key file: the key as text on one line (surrounding white space ignored)."""
    raw = Path(path).read_bytes().strip()
    if len(raw) < MIN_KEY_BYTES:
        raise ValueError(f"{path}: the consortium key is {len(raw)} bytes; it must be at least {MIN_KEY_BYTES}")
    return raw


def mask_numbers(text: str) -> str:
    """An error text with every run of six or more digits hidden.

    Error texts travel further than the data they are about: to the Today page,
    /api/v1/status, the console and the journal. A number that long may be a card
    number that arrived where a key or another field was expected (a central item
    with a raw number as its card_key, a patron CSV with its columns shifted), and
    no card number may appear in an error text. Shorter numbers (line numbers,
    years, counts) are what staff need to find the problem, and stay.
    """
    return _LONG_NUMBER.sub(lambda match: f"[{len(match.group())} digits]", text)
