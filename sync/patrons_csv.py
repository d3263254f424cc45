"""Patron permissions from a CSV file, for a library with no central service.

The file is typically a nightly export from the library system. Card numbers are
hashed while the file is read; the raw numbers never reach the database. A file
with any bad row is refused whole, with every problem listed, so a half-imported
file can never lock out (or let in) the wrong people.

Columns (header row required, order free):
``card_number, self_service, blocked_reason, valid_until, age_ok_from, staff, pin_verifier``.
Only ``card_number`` is required; a missing column means false / empty.
``pin_verifier`` (see ``device.pins``) is kept, peppered, only when the branch asks for PINs;
the central service keeps it as given (``keep_pin_verifiers``), to send on to the branches.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from pathlib import Path

from device.cards import CardNumberError, card_key, mask_numbers, normalize
from device.pins import VerifierError, check_verifier, pepper_verifier
from device.policy import Patron

COLUMNS = ("card_number", "self_service", "blocked_reason", "valid_until", "age_ok_from", "staff", "pin_verifier")
_TRUE = {"1", "true", "yes", "y", "kyllä", "ja"}
_FALSE = {"0", "false", "no", "n", "ei", "nej", ""}
MAX_REPORTED = 50


class PatronCsvError(ValueError):
    """Every problem in a patron file, each masked: a file with shifted columns puts card numbers in other fields."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems = [mask_numbers(problem) for problem in problems]
        shown = problems[:MAX_REPORTED]
        more = f"\n… and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        super().__init__("\n".join(f"{source}: {p}" for p in shown) + more)


def read_patrons(
    path: str | Path, consortium_key: bytes, fetched_at: datetime, pin_pepper: bytes | None = None, *,
    keep_pin_verifiers: bool = False,
) -> list[Patron]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PatronCsvError(str(path), [f"byte {exc.start}: the file must be UTF-8 text"]) from None
    return parse_patrons(text, consortium_key, fetched_at, source=str(path), pin_pepper=pin_pepper,
                         keep_pin_verifiers=keep_pin_verifiers)


def parse_patrons(
    text: str, consortium_key: bytes, fetched_at: datetime, source: str = "<csv>", pin_pepper: bytes | None = None, *,
    keep_pin_verifiers: bool = False,
) -> list[Patron]:
    dialect = csv.excel
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        pass
    # newline="": the csv module reads CR, LF and CRLF line ends itself, and a CR
    # inside a quoted field stays part of the field.
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    try:
        return _read_rows(reader, consortium_key, fetched_at, source, pin_pepper, keep_pin_verifiers)
    except csv.Error as exc:
        # A field over the csv module's size limit, say; its message quotes no data.
        raise PatronCsvError(source, [f"line {reader.line_num}: {exc}"]) from None


def _read_rows(
    reader: csv.DictReader, consortium_key: bytes, fetched_at: datetime, source: str, pin_pepper: bytes | None,
    keep_pin_verifiers: bool,
) -> list[Patron]:
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    problems: list[str] = []
    if "card_number" not in header:
        # What was found is not shown: in a file without a header row it is a card number.
        raise PatronCsvError(
            source, [f"line 1: the first line must be a header row naming a card_number column; allowed columns: {', '.join(COLUMNS)}"]
        )
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise PatronCsvError(source, [f"line 1: unknown column(s) {', '.join(unknown)}; allowed: {', '.join(COLUMNS)}"])

    patrons: dict[str, Patron] = {}
    first_line: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if None in row:
            problems.append(f"line {line}: more fields than the header has columns")
            continue
        row_problems: list[str] = []

        def field(name: str, convert):
            value = (row.get(name) or "").strip()
            try:
                return convert(value)
            except ValueError as exc:
                row_problems.append(f"line {line}, {name}: {exc}")
                return None

        number = field("card_number", _card_number)
        patron_fields = {
            "self_service": field("self_service", _bool),
            "blocked_reason": (row.get("blocked_reason") or "").strip() or None,
            "valid_until": field("valid_until", _date),
            "age_ok_from": field("age_ok_from", _date),
            "staff": field("staff", _bool),
            "pin_verifier": field("pin_verifier", lambda v: _verifier(v, pin_pepper, keep_pin_verifiers)),
        }
        if row_problems:
            problems.extend(row_problems)
            continue
        key = card_key(consortium_key, number)
        if key in patrons:
            problems.append(f"line {line}, card_number: the same card is already on line {first_line[key]}")
            continue
        first_line[key] = line
        patrons[key] = Patron(card_key=key, fetched_at=fetched_at, **patron_fields)
    if problems:
        raise PatronCsvError(source, problems)
    return list(patrons.values())


def _card_number(value: str) -> str:
    if not value:
        raise ValueError("empty; every row needs a card number")
    try:
        return normalize(value)
    except CardNumberError:
        raise ValueError("not a card number (expected 1-64 letters and digits)") from None


def _verifier(value: str, pepper: bytes | None, keep: bool) -> str | None:
    if not value or (pepper is None and not keep):
        return None
    try:
        return check_verifier(value) if keep else pepper_verifier(value, pepper)
    except VerifierError as exc:
        raise ValueError(str(exc)) from None


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a yes/no value (use 1 or 0)")


def _date(value: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None
