"""Patron permissions from a CSV file, for a library with no central service.

The file is typically a nightly export from the library system. Card numbers are
hashed while the file is read; the raw numbers never reach the database. A file
with any bad row is refused whole, with its problems listed, so a half-imported
file can never lock out (or let in) the wrong people.

The file is read a chunk of rows at a time and never held whole: the documented
32 MB file (800,000 patrons) took 768 MB when it was read into one list, three
times the web unit's MemoryMax. ``import_patrons`` stages the rows in the
database as they are read, and swaps or merges them in only once the whole file
has proved good.

Columns (header row required, order free):
``card_number, self_service, blocked_reason, valid_until, age_ok_from, staff, pin_verifier``.
Only ``card_number`` is required; a missing column means false / empty.
``pin_verifier`` (see ``device.pins``) is kept, peppered, only when the branch asks for PINs;
the central service keeps it as given (``keep_pin_verifiers``), to send on to the branches.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import os
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import BinaryIO, Callable, Iterator

from device.cards import CardNumberError, card_key, mask_numbers, normalize
from device.pins import VerifierError, check_verifier, pepper_verifier
from device.policy import Patron
from device.store import Store

COLUMNS = ("card_number", "self_service", "blocked_reason", "valid_until", "age_ok_from", "staff", "pin_verifier")
_TRUE = {"1", "true", "yes", "y", "kyllä", "ja"}
_FALSE = {"0", "false", "no", "n", "ei", "nej", ""}
MAX_REPORTED = 50
#: Rows hashed and written per chunk: a few hundred kB of Python objects at a time.
CHUNK_ROWS = 2_000
_READ_BYTES = 64 * 1024
_SNIFF_CHARS = 4096
#: A line is handed on in pieces of this many characters at most: a longer one has
#: a field over the csv module's limit (131,072) anyway, and so refuses the file,
#: and a file without a line end is not gathered whole in memory meanwhile.
_LONGEST_LINE = 1024 * 1024
#: How often an import writes its progress where the staff page reads it.
PROGRESS_EVERY_SECONDS = 1.0
#: The ``device_status`` key of the latest import's progress and outcome.
PROGRESS_KEY = "patron_import"


class PatronCsvError(ValueError):
    """The file is refused. ``problems`` holds the first MAX_REPORTED, ``count`` how many there were.

    Each problem is masked: a file with shifted columns puts card numbers in other fields."""

    def __init__(self, source: str, problems: list[str], count: int | None = None):
        self.problems = [mask_numbers(problem) for problem in problems[:MAX_REPORTED]]
        self.count = len(problems) if count is None else count
        more = f"\n… and {self.count - MAX_REPORTED} more" if self.count > MAX_REPORTED else ""
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems) + more)


class NotUtf8Error(PatronCsvError):
    """The file is not UTF-8 text (a spreadsheet's "CSV" in a legacy code page, say)."""


@dataclass(frozen=True)
class Progress:
    bytes_read: int
    total_bytes: int | None
    rows: int


#: Keeps a chunk's patrons, given in file order with their lines, and returns the
#: line each card was first kept from: at least for every card it had already
#: (earlier in the chunk too), and possibly for the others.
Stage = Callable[[list[tuple[int, Patron]]], dict[str, int]]


def in_memory(kept: dict[str, tuple[int, Patron]]) -> Stage:
    """A Stage into a dict, for a file small enough to hold (tests, the fuzzer)."""

    def stage(patrons: list[tuple[int, Patron]]) -> dict[str, int]:
        earlier = {}
        for line, patron in patrons:
            if patron.card_key in kept:
                earlier[patron.card_key] = kept[patron.card_key][0]
            else:
                kept[patron.card_key] = (line, patron)
        return earlier

    return stage


class PatronCsv:
    """One patron CSV, read from a binary stream a chunk of rows at a time."""

    def __init__(
        self, stream: BinaryIO, consortium_key: bytes, fetched_at: datetime, *, source: str = "<csv>",
        pin_pepper: bytes | None = None, keep_pin_verifiers: bool = False,
    ):
        self.stream = stream
        self.keep_pin_verifiers = keep_pin_verifiers
        self.consortium_key = consortium_key
        self.fetched_at = fetched_at
        self.source = source
        self.pin_pepper = pin_pepper
        self.bytes_read = 0
        self.rows = 0
        self._problems: list[str] = []
        self._problem_count = 0

    def chunks(self, stage: Stage) -> Iterator[list[Patron]]:
        """Stage the file's patrons CHUNK_ROWS at a time, yielding each chunk's; PatronCsvError at the end if any row was bad.

        Once a row is bad nothing more is yielded (the file will be refused), but
        the rest is still read so that every problem is counted.
        """
        reader = None
        try:
            lines = self._lines()
            reader = csv.DictReader(lines, dialect=self._dialect)
            self._check_header(reader)
            numbered = ((reader.line_num, row) for row in reader)
            while chunk := list(itertools.islice(numbered, CHUNK_ROWS)):
                patrons = self._chunk(chunk, stage)
                if not self._problem_count:
                    yield patrons
        except csv.Error as exc:
            # A field over the csv module's size limit, say; its message quotes no data.
            self._problem(f"line {reader.line_num if reader else 1}: {_csv_error_text(exc)}")
        except _NotUtf8 as exc:
            raise NotUtf8Error(self.source, [f"byte {exc.offset}: the file must be UTF-8 text"]) from None
        if self._problem_count:
            raise PatronCsvError(self.source, self._problems, self._problem_count)

    # -- reading ------------------------------------------------------------------
    def _lines(self) -> Iterator[str]:
        """The text's lines as ``open(newline="")`` gives them, decoded a block at a time.

        The first lines are held back until the dialect has been guessed from them.
        """
        lines = self._decoded_lines()
        sample = []
        while sum(map(len, sample)) < _SNIFF_CHARS and (line := next(lines, None)) is not None:
            sample.append(line)
        self._dialect = csv.excel
        try:
            self._dialect = csv.Sniffer().sniff("".join(sample)[:_SNIFF_CHARS], delimiters=",;\t")
        except csv.Error:
            pass
        return itertools.chain(sample, lines)

    def _decoded_lines(self) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")()
        carry = ""
        first = True
        while True:
            block = self.stream.read(_READ_BYTES)
            pending = decoder.getstate()[0]
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                raise _NotUtf8(self.bytes_read - len(pending) + exc.start) from None
            self.bytes_read += len(block)
            if first and text:
                text, first = text.removeprefix("\ufeff"), False
            # newline="": the csv module reads CR, LF and CRLF line ends itself, and a
            # CR inside a quoted field stays part of the field.
            lines = io.StringIO(carry + text, newline="").readlines()
            # The last line may go on in the next block (a CR there may be half a CRLF).
            carry = lines.pop() if block and lines and not lines[-1].endswith("\n") else ""
            if len(carry) > _LONGEST_LINE:
                lines.append(carry)
                carry = ""
            yield from lines
            if not block:
                return

    def _check_header(self, reader: csv.DictReader) -> None:
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        if "card_number" not in header:
            # What was found is not shown: in a file without a header row it is a card number.
            raise PatronCsvError(
                self.source,
                [f"line 1: the first line must be a header row naming a card_number column; allowed columns: {', '.join(COLUMNS)}"],
            )
        unknown = [h for h in header if h not in COLUMNS]
        if unknown:
            raise PatronCsvError(self.source, [f"line 1: unknown column(s) {', '.join(unknown)}; allowed: {', '.join(COLUMNS)}"])

    def _chunk(self, rows: list[tuple[int, dict]], stage: Stage) -> list[Patron]:
        problems: list[tuple[int, str]] = []
        patrons = []
        for line, row in rows:
            patron, row_problems = self._row(line, row)
            problems.extend((line, problem) for problem in row_problems)
            if patron is not None:
                patrons.append((line, patron))
        earlier = stage(patrons)
        kept = []
        for line, patron in patrons:
            first = earlier.get(patron.card_key)
            if first is not None and first != line:
                problems.append((line, f"line {line}, card_number: the same card is already on line {first}"))
            else:
                kept.append(patron)
        for _line, problem in sorted(problems, key=lambda p: p[0]):
            self._problem(problem)
        self.rows += len(rows)
        return kept

    def _row(self, line: int, row: dict) -> tuple[Patron | None, list[str]]:
        if None in row:
            return None, [f"line {line}: more fields than the header has columns"]
        problems: list[str] = []

        def field(name: str, convert):
            value = (row.get(name) or "").strip()
            try:
                return convert(value)
            except ValueError as exc:
                problems.append(f"line {line}, {name}: {exc}")
                return None

        number = field("card_number", _card_number)
        patron_fields = {
            "self_service": field("self_service", _bool),
            "blocked_reason": (row.get("blocked_reason") or "").strip() or None,
            "valid_until": field("valid_until", _date),
            "age_ok_from": field("age_ok_from", _date),
            "staff": field("staff", _bool),
            "pin_verifier": field("pin_verifier", lambda v: _verifier(v, self.pin_pepper, self.keep_pin_verifiers)),
        }
        if problems:
            return None, problems
        return Patron(card_key=card_key(self.consortium_key, number), fetched_at=self.fetched_at, **patron_fields), []

    def _problem(self, text: str) -> None:
        self._problem_count += 1
        if len(self._problems) < MAX_REPORTED:
            self._problems.append(text)


class _NotUtf8(Exception):
    def __init__(self, offset: int):
        self.offset = offset


def parse_patrons(
    data: str | bytes, consortium_key: bytes, fetched_at: datetime, source: str = "<csv>", pin_pepper: bytes | None = None,
    *, keep_pin_verifiers: bool = False,
) -> list[Patron]:
    """Every patron of a file held in memory, in one list (tests, the fuzzer); ``import_patrons`` reads a file of any size."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return _all(PatronCsv(io.BytesIO(data), consortium_key, fetched_at, source=source, pin_pepper=pin_pepper,
                          keep_pin_verifiers=keep_pin_verifiers))


def read_patrons(
    path: str | os.PathLike, consortium_key: bytes, fetched_at: datetime, pin_pepper: bytes | None = None, *,
    keep_pin_verifiers: bool = False,
) -> list[Patron]:
    """Every patron of a file, in one list: for the central service, whose patrons module takes them whole."""
    with open(path, "rb") as stream:
        return _all(PatronCsv(stream, consortium_key, fetched_at, source=str(path), pin_pepper=pin_pepper,
                              keep_pin_verifiers=keep_pin_verifiers))


def _all(csv_file: PatronCsv) -> list[Patron]:
    kept: dict[str, tuple[int, Patron]] = {}
    for _chunk in csv_file.chunks(in_memory(kept)):
        pass
    return [patron for _line, patron in kept.values()]


# -- importing -------------------------------------------------------------------------
@dataclass(frozen=True)
class Imported:
    count: int
    #: Patrons without age_ok_from: the door refuses them in self-service hours.
    ageless: int


class EmptyReplace(ValueError):
    """``replace`` with a file of no patrons would leave nobody with access."""


def import_patrons(
    store: Store, stream: BinaryIO, consortium_key: bytes, fetched_at: datetime, *, source: str, replace: bool,
    pin_pepper: bytes | None = None, total_bytes: int | None = None, by: str = "",
    progress: Callable[[Progress], None] | None = None, audit: Callable[[Imported], None] | None = None,
) -> Imported:
    """Read a patron CSV into the cache a chunk at a time, all or nothing.

    Memory stays the same whatever the file's size: each chunk is hashed and
    staged in the database, which also tells a card that comes twice.
    ``progress`` hears about every chunk; the staff page reads the same progress
    from ``device_status`` (PROGRESS_KEY), whichever process runs the import.
    ``audit`` is called in the transaction that brings the import in, so that the
    staff page's audit entry and the import reach the database together.
    """
    csv_file = PatronCsv(stream, consortium_key, fetched_at, source=source, pin_pepper=pin_pepper)
    reporter = _Reporter(store, by, total_bytes, progress)
    ageless = 0
    store.begin_patron_import()
    try:
        for chunk in csv_file.chunks(lambda patrons: store.stage_patron_import(patrons, source="csv")):
            ageless += sum(1 for p in chunk if p.age_ok_from is None and not p.staff)
            reporter.chunk(csv_file)
        reporter.chunk(csv_file, final=True)
        if replace and not csv_file.rows:
            raise EmptyReplace(f"{source}: the file has no patrons, and replacing the cache with it would leave nobody with access")
        store.prepare_patron_import(replace=replace)
        with store.conn:
            imported = Imported(store.commit_patron_import(replace=replace), ageless)
            if audit:
                audit(imported)
    except BaseException as exc:
        reporter.ended("failed", error=type(exc).__name__)
        raise
    finally:
        store.discard_patron_import()
    reporter.ended("done", count=imported.count)
    return imported


def file_size(stream: BinaryIO) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        here = stream.tell()
        size = stream.seek(0, io.SEEK_END)
        stream.seek(here)
        return size


class _Reporter:
    """Tells the caller, and the staff page through the database, how far an import has come."""

    def __init__(self, store: Store, by: str, total_bytes: int | None, progress: Callable[[Progress], None] | None):
        self.store, self.by, self.total, self.progress = store, by, total_bytes, progress
        self.started = time.monotonic()
        self._last_written = float("-inf")
        self._state = {"state": "running", "by": by, "bytes": 0, "total": total_bytes, "rows": 0}
        self._write()

    def chunk(self, csv_file: PatronCsv, final: bool = False) -> None:
        done = Progress(csv_file.bytes_read, self.total, csv_file.rows)
        if self.progress:
            self.progress(done)
        self._state.update(bytes=done.bytes_read, rows=done.rows)
        if final or time.monotonic() - self._last_written >= PROGRESS_EVERY_SECONDS:
            self._write()

    def ended(self, state: str, **detail) -> None:
        self._state.update(state=state, **detail)
        self._write()

    def _write(self) -> None:
        self._last_written = time.monotonic()
        self.store.set_status(PROGRESS_KEY, self._state)


def _csv_error_text(exc: csv.Error) -> str:
    """The csv module's complaint, with its field limit written so that the masking of long
    digit runs (which could be card numbers) leaves the number readable."""
    limit = csv.field_size_limit()
    return str(exc).replace(f"({limit})", f"({limit:,} characters)")


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
