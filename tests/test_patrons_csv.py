"""Importing patron permissions from the library system's CSV export."""

import io
from datetime import date, datetime, timezone

import pytest

from device.cards import card_key
from device.policy import Patron
from sync.patrons_csv import PatronCsvError, parse_patrons

KEY = b"omaovi-test-vector-key-000000000"
FETCHED_AT = datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc)

GOOD_ROWS = [
    ["card_number", "self_service", "blocked_reason", "valid_until", "age_ok_from", "staff"],
    ["12345678", "1", "", "2027-05-31", "2008-03-01", "0"],
    ["04:a2 1b-3c", "yes", "unpaid fines", "", "", "no"],
    ["90000001", "0", "", "", "", "1"],
]
GOOD_PATRONS = [
    Patron(card_key(KEY, "12345678"), self_service=True, valid_until=date(2027, 5, 31), age_ok_from=date(2008, 3, 1), fetched_at=FETCHED_AT),
    Patron(card_key(KEY, "04A21B3C"), self_service=True, blocked_reason="unpaid fines", fetched_at=FETCHED_AT),
    Patron(card_key(KEY, "90000001"), staff=True, fetched_at=FETCHED_AT),
]


def parse(text: str) -> list[Patron]:
    return parse_patrons(text, KEY, FETCHED_AT, source="patrons.csv")


def problems(text: str) -> list[str]:
    with pytest.raises(PatronCsvError) as caught:
        parse(text)
    return caught.value.problems


@pytest.mark.parametrize(
    "delimiter, encoding, newline",
    [
        pytest.param(",", "utf-8", "\n", id="comma"),
        pytest.param(";", "utf-8", "\r\n", id="semicolon-crlf"),
        pytest.param("\t", "utf-8", "\n", id="tab"),
        pytest.param(";", "utf-8-sig", "\r\n", id="semicolon-with-bom"),
        pytest.param(",", "utf-8-sig", "\n", id="comma-with-bom"),
    ],
)
def test_a_good_file_is_read(tmp_path, delimiter, encoding, newline):
    path = tmp_path / "patrons.csv"
    path.write_bytes(newline.join(delimiter.join(row) for row in GOOD_ROWS).encode(encoding) + newline.encode())
    assert parse_patrons(path.read_bytes(), KEY, FETCHED_AT) == GOOD_PATRONS


def test_columns_may_come_in_any_order_and_only_card_number_is_required():
    assert parse("staff,card_number\n1,111\n,222\n") == [
        Patron(card_key(KEY, "111"), staff=True, fetched_at=FETCHED_AT),
        Patron(card_key(KEY, "222"), fetched_at=FETCHED_AT),
    ]


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "yes", "Y", "kyllä", "Kyllä", "ja"])
def test_yes_values(text):
    [patron] = parse(f"card_number,self_service\n111,{text}\n")
    assert patron.self_service is True


@pytest.mark.parametrize("text", ["0", "false", "No", "n", "ei", "EI", "nej", ""])
def test_no_values(text):
    [patron] = parse(f"card_number,self_service\n111,{text}\n")
    assert patron.self_service is False


def test_every_patron_carries_the_fetch_time():
    assert {patron.fetched_at for patron in parse("card_number\n111\n222\n")} == {FETCHED_AT}


def test_a_file_with_only_a_header_has_no_patrons():
    assert parse("card_number,self_service\n") == []


def test_the_whole_file_is_refused_with_every_bad_line_listed():
    text = (
        "card_number,self_service,valid_until,staff\n"
        "04A21B3C,1,2027-05-31,0\n"  # line 2: good
        "111,1,31.12.2027,0\n"  # line 3: Finnish date format
        "222,maybe,,0\n"  # line 4: not a yes/no value
        ",1,,0\n"  # line 5: no card number
        "04:a2 1b-3c,1,,0\n"  # line 6: the card of line 2, written with separators
        "333,1,2027-02-30,0\n"  # line 7: no such day
        "444,1,,0,extra\n"  # line 8: one field too many
        "55!5,1,,0\n"  # line 9: not a card number
        "666,1,,kyllä\n"  # line 10: good
    )
    with pytest.raises(PatronCsvError) as caught:
        parse(text)
    assert caught.value.problems == [
        "line 3, valid_until: '31.12.2027' is not a date (YYYY-MM-DD)",
        "line 4, self_service: 'maybe' is not a yes/no value (use 1 or 0)",
        "line 5, card_number: empty; every row needs a card number",
        "line 6, card_number: the same card is already on line 2",
        "line 7, valid_until: '2027-02-30' is not a date (YYYY-MM-DD)",
        "line 8: more fields than the header has columns",
        "line 9, card_number: not a card number (expected 1-64 letters and digits)",
    ]
    assert str(caught.value).splitlines() == [f"patrons.csv: {problem}" for problem in caught.value.problems]


def test_one_line_can_have_several_problems():
    assert problems("card_number,valid_until,staff\n111,tomorrow,sometimes\n") == [
        "line 2, valid_until: 'tomorrow' is not a date (YYYY-MM-DD)",
        "line 2, staff: 'sometimes' is not a yes/no value (use 1 or 0)",
    ]


@pytest.mark.parametrize(
    "text, problem",
    [
        pytest.param(
            "card_number,self_service,expires\n111,1,2027-01-01\n",
            "line 1: unknown column(s) expires; allowed: card_number, self_service, blocked_reason, valid_until, age_ok_from, staff, pin_verifier",
            id="unknown-column",
        ),
        pytest.param(
            "cardnumber,self_service\n111,1\n",
            "line 1: the first line must be a header row naming a card_number column; "
            "allowed columns: card_number, self_service, blocked_reason, valid_until, age_ok_from, staff, pin_verifier",
            id="no-card-number-column",
        ),
        pytest.param(
            "",
            "line 1: the first line must be a header row naming a card_number column; "
            "allowed columns: card_number, self_service, blocked_reason, valid_until, age_ok_from, staff, pin_verifier",
            id="empty-file",
        ),
    ],
)
def test_a_bad_header_refuses_the_file(text, problem):
    assert problems(text) == [problem]


def test_a_long_list_of_problems_is_cut_short_in_the_message():
    """Only the first 50 are kept, so a file that is wrong on every one of its 800,000 lines costs no memory."""
    text = "card_number,staff\n" + "".join(f"{n},maybe\n" for n in range(100, 160))
    with pytest.raises(PatronCsvError) as caught:
        parse(text)
    assert len(caught.value.problems) == 50 and caught.value.count == 60
    lines = str(caught.value).splitlines()
    assert len(lines) == 51 and lines[-1] == "… and 10 more"


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "patrons.csv"
    path.write_bytes("card_number,blocked_reason\n111,lainat erääntyneet\n".encode("latin-1"))
    with pytest.raises(PatronCsvError) as caught:
        parse_patrons(path.read_bytes(), KEY, FETCHED_AT)
    assert caught.value.problems == ["byte 40: the file must be UTF-8 text"]


# --- Raw card numbers never leave the importer -----------------------------------

CARD_NUMBERS = ["27000111222333", "27000444555666", "27000777888999", "04B7C2D1"]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            "card_number,valid_until,self_service\n"
            f"{CARD_NUMBERS[0]},31.12.2027,1\n{CARD_NUMBERS[1]},,perhaps\n{CARD_NUMBERS[2]},,1,extra\n"
            f"{CARD_NUMBERS[3]},,1\n{CARD_NUMBERS[3].lower()},,1\n",
            id="bad-rows",
        ),
        # An export without its header row: the first card number is where the header should be.
        pytest.param(f"{CARD_NUMBERS[0]},1\n{CARD_NUMBERS[1]},0\n", id="no-header-row"),
    ],
)
def test_no_raw_card_number_in_any_error_message(text):
    with pytest.raises(PatronCsvError) as caught:
        parse(text)
    message = str(caught.value)
    assert [number for number in CARD_NUMBERS if number.lower() in message.lower()] == []


def test_no_raw_card_number_in_the_patrons():
    text = "card_number,blocked_reason,staff\n" + "".join(f"{number},,1\n" for number in CARD_NUMBERS)
    patrons = parse(text)
    assert [patron.card_key for patron in patrons] == [card_key(KEY, number) for number in CARD_NUMBERS]
    shown = repr(patrons).lower()
    assert [number for number in CARD_NUMBERS if number.lower() in shown] == []


# --- Importing a file a chunk at a time (sync.patrons_csv.import_patrons) -----------

def _csv_bytes(numbers, extra: str = "") -> bytes:
    return ("card_number,self_service,age_ok_from\n" + "".join(f"{n},1,2000-01-01\n" for n in numbers) + extra).encode()


@pytest.fixture
def store(tmp_path):
    from device.store import Store

    store = Store(tmp_path / "omaovi.db")
    yield store
    store.close()


def _import(store, data: bytes, replace: bool = False, **kwargs):
    from sync.patrons_csv import import_patrons

    return import_patrons(store, io.BytesIO(data), KEY, FETCHED_AT, source="patrons.csv", replace=replace,
                          total_bytes=len(data), **kwargs)


def _leftover_tables(store) -> list[str]:
    return [name for (name,) in store.conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'patrons_%' UNION ALL "
        "SELECT name FROM sqlite_temp_master WHERE type = 'table'"
    )]


def test_an_import_reads_the_file_a_chunk_at_a_time_and_brings_it_in_whole(store, monkeypatch):
    from sync import patrons_csv

    monkeypatch.setattr(patrons_csv, "CHUNK_ROWS", 100)
    staged = []
    real_stage = store.stage_patron_import
    monkeypatch.setattr(store, "stage_patron_import", lambda patrons, source: staged.append(len(patrons)) or real_stage(patrons, source=source))
    numbers = range(10_000_000, 10_000_950)
    imported = _import(store, _csv_bytes(numbers))
    assert imported.count == 950 and imported.ageless == 0
    assert max(staged) == 100 and sum(staged) == 950  # never more than a chunk held at once
    assert store.patron_count() == 950 and store.patron(card_key(KEY, "10000949")).self_service
    assert _leftover_tables(store) == []


def test_a_card_twice_far_apart_in_the_file_is_found_through_the_database(store, monkeypatch):
    from sync import patrons_csv

    monkeypatch.setattr(patrons_csv, "CHUNK_ROWS", 100)
    data = _csv_bytes(range(10_000_000, 10_000_500), extra="10000007,1,2000-01-01\n")
    with pytest.raises(PatronCsvError) as caught:
        _import(store, data)
    assert caught.value.problems == ["line 502, card_number: the same card is already on line 9"]


def test_a_bad_line_after_many_good_chunks_imports_nothing_and_leaves_nothing_behind(store, monkeypatch):
    from sync import patrons_csv

    monkeypatch.setattr(patrons_csv, "CHUNK_ROWS", 100)
    _import(store, _csv_bytes([90000001]))
    data = _csv_bytes(range(10_000_000, 10_000_900), extra="10009999,perhaps,\n")
    with pytest.raises(PatronCsvError) as caught:
        _import(store, data, replace=True)
    assert caught.value.problems == ["line 902, self_service: 'perhaps' is not a yes/no value (use 1 or 0)"]
    assert store.patron_count() == 1 and store.patron(card_key(KEY, "90000001")) is not None
    assert _leftover_tables(store) == []
    assert store.status()["patron_import"]["value"]["state"] == "failed"


def test_an_import_adds_to_the_cache_or_replaces_it(store):
    _import(store, _csv_bytes([90000001, 90000002]))
    _import(store, _csv_bytes([90000002, 90000003]))
    assert store.patron_count() == 3
    _import(store, _csv_bytes([90000004]), replace=True)
    assert store.patron_count() == 1 and store.patron(card_key(KEY, "90000004")) is not None


def test_an_import_reports_its_progress_to_the_caller_and_in_the_database(store):
    from sync import patrons_csv

    data = _csv_bytes(range(10_000_000, 10_030_000))
    assert len(data) > 10 * patrons_csv._READ_BYTES
    seen = []
    _import(store, data, by="admin", progress=seen.append)
    assert [p.bytes_read for p in seen] == sorted(p.bytes_read for p in seen)
    assert seen[-1].bytes_read == seen[-1].total_bytes == len(data) and seen[-1].rows == 30_000
    assert store.status()["patron_import"]["value"] == {
        "state": "done", "by": "admin", "bytes": len(data), "total": len(data), "rows": 30_000, "count": 30_000,
    }


def test_a_multibyte_character_across_read_blocks_is_read_whole(store, monkeypatch):
    from sync import patrons_csv

    monkeypatch.setattr(patrons_csv, "_READ_BYTES", 7)
    patrons = parse("card_number,blocked_reason\n12345678,lainat erääntyneet ✓\r\n87654321,\r\n")
    assert [p.blocked_reason for p in patrons] == ["lainat erääntyneet ✓", None]


def test_a_file_with_no_line_end_is_refused_without_gathering_it_whole(monkeypatch):
    from sync import patrons_csv

    longest = []
    real = io.StringIO

    class Watching(real):
        def __init__(self, text="", newline=None):
            longest.append(len(text))
            super().__init__(text, newline=newline)

    monkeypatch.setattr(patrons_csv.io, "StringIO", Watching)
    with pytest.raises(PatronCsvError) as caught:
        parse("card_number,blocked_reason\n12345678," + "x" * (3 * 2**20))
    assert [problem.split(": ", 1)[1] for problem in caught.value.problems] == ["field larger than field limit (131,072 characters)"]
    assert max(longest) <= patrons_csv._LONGEST_LINE + patrons_csv._READ_BYTES
