"""Patron permissions from Koha's REST API, against a stub that answers only what Koha's definitions allow."""

from __future__ import annotations

import json
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import MetaData, func, select

from central import config, db, koha_sync, schema
from central.koha import CARD_LOST, RESTRICTED, KohaError
from central.koha_client import KohaClient
from central.serve import start_background
from device.cards import card_key
from device.cli import main
from device.config import ConfigError
from device.pins import make_verifier
from koha_stub import CLIENT_ID, CLIENT_SECRET, KohaStub, koha_patron

KEY_TEXT = "omaovi-test-vector-key-000000000"
KEY = KEY_TEXT.encode()
#: The day the tests live in; every date below is relative to it.
TODAY = date(2031, 3, 15)
NOW = datetime(2031, 3, 15, 10, 0, tzinfo=timezone.utc)
ACCEPTED = {"OMATOIMI": "1"}


def _years_before(day: date, years: int) -> date:
    return day.replace(year=day.year - years)


def koha_patrons() -> list[dict]:
    """Ten patrons over four pages of three: every rule the mapping has, once."""
    return [
        koha_patron(101, "29000001", born=date(1991, 5, 20), expiry=TODAY + timedelta(days=300), attributes=ACCEPTED),
        koha_patron(102, "29000002", born=date(1985, 11, 2), restricted=True, attributes={"OMATOIMI": " KYLLÄ "}),
        koha_patron(103, None, born=date(1970, 1, 9), attributes=ACCEPTED),
        koha_patron(104, "29000004", born=date(1962, 7, 30), category="JUVENILE", lost=True, attributes=ACCEPTED),
        koha_patron(105, "29000005", born=date(1979, 4, 4), category="HENKILO", attributes={"OTHER": "1"}),
        koha_patron(106, "29000006", born=_years_before(TODAY, 15), attributes=ACCEPTED),
        koha_patron(107, "29000007", born=_years_before(TODAY, 15) + timedelta(days=1), attributes=ACCEPTED),
        koha_patron(108, "2900-0008", born=None, lost=None, attributes={"OMATOIMI": "0"}),
        koha_patron(109, "  ", born=date(2001, 2, 3)),
        koha_patron(110, "KORTTI-Ä!", born=date(2002, 3, 4)),
    ]


def write_config(tmp_path: Path, database_url: str, koha_url: str, koha_extra: str = "", secret: str = CLIENT_SECRET) -> Path:
    (tmp_path / "consortium.key").write_text(KEY_TEXT)
    (tmp_path / "koha.secret").write_text(secret + "\n")
    path = tmp_path / "central.toml"
    path.write_text(f"""
consortium_key_file = "consortium.key"
database = "{database_url}"
[koha]
base_url = "{koha_url}"
client_id = "{CLIENT_ID}"
client_secret_file = "koha.secret"
per_page = 3
self_service_attribute = "OMATOIMI"
self_service_accepted = ["1", "kyllä"]
staff_categories = ["HENKILO"]
allowed_categories = ["ADULT", "HENKILO"]
minimum_age = 15
{koha_extra}
""", encoding="utf-8")
    return path


class Setup:
    def __init__(self, tmp_path: Path, database_url: str, stub: KohaStub, koha_extra: str = ""):
        self.path = write_config(tmp_path, database_url, stub.url, koha_extra)
        self.settings = config.load(self.path)
        self.engine = db.open_engine(self.settings.database_url)
        db.migrate(self.engine)
        self.stub = stub
        self.sleeps: list[float] = []

    def client(self, **kwargs) -> KohaClient:
        return KohaClient(self.stub.url, CLIENT_ID, CLIENT_SECRET, sleep=self.sleeps.append, **kwargs)

    def sync(self, **kwargs) -> koha_sync.SyncResult:
        return koha_sync.sync(self.settings, self.engine, NOW, self.client(**kwargs))

    def cards(self) -> dict[str, dict]:
        with db.reading(self.engine) as connection:
            return {row.card_key: row._asdict() for row in connection.execute(select(schema.patrons))}

    def log_rows(self) -> int:
        with db.reading(self.engine) as connection:
            return connection.execute(select(func.count()).select_from(schema.patron_log)).scalar_one()


@pytest.fixture
def stub():
    with KohaStub(koha_patrons()) as server:
        yield server


@pytest.fixture
def setup(tmp_path, stub):
    s = Setup(tmp_path, f"sqlite:///{tmp_path / 'central.db'}", stub)
    yield s
    s.engine.dispose()


def key(number: str) -> str:
    return card_key(KEY, number)


def test_a_sync_pages_through_koha_and_keeps_each_cards_permissions_only(setup, stub):
    result = setup.sync()

    queries = [r["query"] for r in stub.patron_requests()]
    assert [q["_page"] for q in queries] == ["1", "2", "3", "4"] and {q["_per_page"] for q in queries} == {"3"}
    assert all(r["embed"] == "extended_attributes" and r["authorization"].startswith("Bearer ") for r in stub.patron_requests())
    assert (result.pages, result.harvest.read, result.changed, result.removed) == (4, 10, 7, 0)
    assert "2 without a card number" in result.summary() and "1 with an unusable card number" in result.summary()
    cards = setup.cards()
    assert set(cards) == {key(n) for n in ("29000001", "29000002", "29000004", "29000005", "29000006", "29000007", "29000008")}
    adult = cards[key("29000001")]
    assert (adult["self_service"], adult["blocked_reason"], adult["valid_until"], adult["staff"]) == (
        True, None, TODAY + timedelta(days=300), False)
    assert adult["age_ok_from"] == date(2006, 5, 20)
    assert cards[key("29000002")]["blocked_reason"] == RESTRICTED and cards[key("29000002")]["self_service"]
    juvenile = cards[key("29000004")]
    assert juvenile["blocked_reason"] == CARD_LOST and not juvenile["self_service"]  # terms accepted, category not allowed
    staff = cards[key("29000005")]
    assert staff["staff"] and not staff["self_service"]
    no_birth_date = cards[key("29000008")]
    assert no_birth_date["age_ok_from"] is None and not no_birth_date["self_service"] and no_birth_date["blocked_reason"] is None


def test_age_is_reached_on_the_fifteenth_birthday_and_not_a_day_before(setup):
    setup.sync()
    cards = setup.cards()
    assert cards[key("29000006")]["age_ok_from"] == TODAY  # fifteen today
    assert cards[key("29000007")]["age_ok_from"] == TODAY + timedelta(days=1)  # fifteen tomorrow


def test_a_leap_day_birthday_comes_of_age_on_the_last_day_of_february():
    from central.koha import age_ok_from

    assert age_ok_from(date(2016, 2, 29), 15) == date(2031, 2, 28)
    assert age_ok_from(date(2016, 2, 29), 16) == date(2032, 2, 29)


def test_the_next_sync_logs_only_changed_and_removed_cards(setup, stub):
    setup.sync()
    before = setup.log_rows()
    stub.patrons[0]["restricted"] = True
    del stub.patrons[5]  # 29000006 left the library

    result = setup.sync()

    assert (result.changed, result.removed) == (1, 1)
    assert setup.log_rows() == before + 2
    assert key("29000006") not in setup.cards() and setup.cards()[key("29000001")]["blocked_reason"] == RESTRICTED
    assert setup.sync().changed == 0 and setup.log_rows() == before + 2


def test_a_token_is_renewed_before_koha_would_refuse_it(setup, stub):
    now = [0.0]

    def client_clock():  # fifty seconds pass between any two looks at the clock
        now[0] += 50
        return now[0]

    stub.clock = lambda: now[0]
    stub.expires_in = 60
    setup.sync(clock=client_clock)

    tokens = {r["authorization"] for r in stub.patron_requests()}
    assert stub.served_401 == 0 and len(tokens) == 4


def test_a_token_koha_forgot_is_replaced_once_and_the_sync_goes_on(setup, stub):
    stub.forget_tokens_after = 2

    result = setup.sync()

    assert stub.served_401 == 1 and result.harvest.read == 10
    assert len([r for r in stub.requests if r["path"] == "/api/v1/oauth/token"]) == 2


def test_401_with_a_fresh_token_ends_the_sync_and_changes_nothing(setup, stub):
    setup.sync()
    cards, logged = setup.cards(), setup.log_rows()
    stub.refuse_all_tokens = True
    stub.patrons[0]["restricted"] = True

    with pytest.raises(KohaError, match="HTTP 401"):
        setup.sync()

    assert stub.served_401 == 1 and setup.cards() == cards and setup.log_rows() == logged  # a fresh token refused is not tried again


def test_a_wrong_client_secret_says_where_to_look(tmp_path, stub, capsys):
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'central.db'}", stub.url, secret="wrong")

    assert main(["central", "patrons-sync-koha", "-c", str(path)]) == 1

    err = capsys.readouterr().err
    assert "HTTP 403" in err and "client_secret_file" in err and "Nothing was changed." in err


def _page(items: list[dict], **changes) -> bytes:
    return json.dumps([{**item, **changes} for item in items]).encode()


BROKEN = {
    "a field of the wrong type": (lambda p: _page(p[3:6], restricted="yes"), "page 2, patron 1 (patron_id 104): restricted is a string"),
    "not JSON": (lambda p: b"<html><body>502 Proxy Error</body></html>", "page 2: not valid JSON"),
    "an object instead of a list": (lambda p: b'{"error": "oops"}', "page 2: expected a list of patrons, got an object"),
    "a birth date that is no date": (lambda p: _page(p[3:6], date_of_birth="1962-02-30"), "date_of_birth is not a date"),
    "no extended attributes": (
        lambda p: json.dumps([{k: v for k, v in i.items() if k != "extended_attributes"} for i in p[3:6]]).encode(),
        "did not honour x-koha-embed"),
    "a patron deleted during the sync": (lambda p: _page(p[3:5]), "the pages held 9 patron(s) but Koha's X-Total-Count said 10"),
    "a patron on two pages": (lambda p: _page(p[2:5]), "patron_id 103 came twice"),
}


@pytest.mark.parametrize("broken", BROKEN, ids=list(BROKEN))
def test_a_broken_page_refuses_the_whole_sync_naming_no_personal_data(setup, stub, broken):
    setup.sync()
    cards, logged = setup.cards(), setup.log_rows()
    stub.patrons[0]["restricted"] = True  # a change that a sync taken in part would store
    make, expected = BROKEN[broken]
    stub.broken_pages[2] = make(stub.patrons)

    with pytest.raises(KohaError) as refused:
        setup.sync()

    assert expected in str(refused.value)
    assert not any(secret in str(refused.value) for secret in ("29000004", "Virtanenqz", "1962-07-30", "1962-02-30"))
    assert setup.cards() == cards and setup.log_rows() == logged


def test_5xx_is_tried_again_with_growing_waits_then_given_up(setup, stub):
    stub.failures = [500, 503]
    assert setup.sync().harvest.read == 10 and setup.sleeps == [2.0, 4.0]

    cards = setup.cards()
    stub.patrons[0]["restricted"] = True
    stub.failures = [500] * 4
    with pytest.raises(KohaError, match="HTTP 500, 4 times"):
        setup.sync()
    assert setup.cards() == cards


def test_koha_listing_nobody_never_empties_the_central_cards(setup, stub):
    setup.sync()
    cards = setup.cards()
    stub.patrons.clear()

    with pytest.raises(KohaError, match="listed no patron"):
        setup.sync()

    assert setup.cards() == cards


def test_the_command_prints_its_counts_and_fails_with_the_reason(setup, stub, capsys):
    assert main(["central", "patrons-sync-koha", "-c", str(setup.path)]) == 0
    assert "Read 10 patron(s) from Koha in 4 page(s): 7 card(s) kept, 7 new or changed, 0 removed" in capsys.readouterr().out

    stub.broken_pages[1] = b"not json"
    assert main(["central", "patrons-sync-koha", "-c", str(setup.path)]) == 1
    assert "page 1: not valid JSON" in capsys.readouterr().err


def test_serve_syncs_from_koha_at_start_and_on_its_interval(tmp_path, stub):
    setup = Setup(tmp_path, f"sqlite:///{tmp_path / 'central.db'}", stub, 'interval = "30m"')
    stopping = threading.Event()
    jobs = start_background(setup.engine, setup.settings, stopping)
    try:
        deadline = time.monotonic() + 60
        while len(setup.cards()) < 7 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(setup.cards()) == 7
    finally:
        stopping.set()
        for job in jobs:
            job.join(timeout=30)
        setup.engine.dispose()
    assert [job.name for job in jobs] == ["compaction", "koha-sync"] and not any(job.is_alive() for job in jobs)


def test_no_card_number_or_personal_data_reaches_the_central_database(tmp_path, stub, database_url):
    setup = Setup(tmp_path, database_url, stub)
    try:
        setup.sync()
        stub.patrons[1]["restricted"] = False
        stub.patrons.pop()
        setup.sync()
        stored = _everything_stored(setup.engine)
    finally:
        setup.engine.dispose()
    if database_url.startswith("sqlite"):
        stored += "".join(p.read_bytes().decode("latin-1") for p in tmp_path.glob("central.db*"))

    assert key("29000001") in stored  # the scan does see the patrons' table
    personal = ("cardnumber", "surname", "firstname", "address", "email", "phone", "date_of_birth", "staff_notes", "userid")
    needles = {str(p[field]).strip() for p in koha_patrons() for field in personal if p[field] and p[field].strip()}
    needles |= {"29000008", "KORTTI"}  # the normalised card number, and the unusable one's letters
    assert needles and sorted(n for n in needles if n in stored) == []


def _everything_stored(engine) -> str:
    tables = MetaData()
    tables.reflect(engine)
    with engine.connect() as connection:
        return "\n".join(repr(tuple(row)) + " " + " ".join(str(value) for value in row)
                         for table in tables.sorted_tables for row in connection.execute(select(table)))


def test_koha_settings_are_checked_with_every_problem_named(tmp_path):
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'central.db'}", "ftp://koha", 'interval = "1m"\ncolour = "red"')
    path.write_text(path.read_text().replace('self_service_accepted = ["1", "kyllä"]', "self_service_accepted = []")
                    .replace("minimum_age = 15", ""))

    with pytest.raises(ConfigError) as error:
        config.load(path)

    text = str(error.value)
    for problem in ('koha.base_url = "ftp://koha"', "koha.self_service_accepted = []", "koha.minimum_age = (missing)",
                    'koha.interval = "1m": must be a time such as', 'koha.colour = "red": unknown key'):
        assert problem in text


def test_the_koha_settings_are_read(setup):
    k = setup.settings.koha
    assert (k.per_page, k.interval, k.client_secret_file) == (3, None, setup.path.parent / "koha.secret")
    assert k.rules.staff_categories == {"HENKILO"} and k.rules.self_service_accepted == ("1", "kyllä")
    assert config.load(write_config(setup.path.parent, "sqlite:///x.db", "https://koha", 'interval = "6h"')).koha.interval == timedelta(hours=6)


def test_the_central_csv_import_keeps_pin_verifiers_as_given(tmp_path):
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'central.db'}", "https://koha.example.fi")
    verifier = make_verifier("2468", "Zx9Qsalt")
    csv = tmp_path / "patrons.csv"
    csv.write_text(f"card_number,self_service,age_ok_from,pin_verifier\n10000001,1,2000-01-01,{verifier}\n10000002,1,2000-01-01,\n")

    assert main(["central", "patrons-import", str(csv), "-c", str(path)]) == 0

    engine = db.open_engine(config.load(path).database_url)
    try:
        with db.reading(engine) as connection:
            stored = dict(connection.execute(select(schema.patrons.c.card_key, schema.patrons.c.pin_verifier)).all())
    finally:
        engine.dispose()
    assert stored == {key("10000001"): verifier, key("10000002"): None}

    csv.write_text("card_number,pin_verifier\n10000003,pbkdf2_sha256$100$salt$abc\n")
    assert main(["central", "patrons-import", str(csv), "-c", str(path)]) == 1


def test_a_page_larger_than_the_cap_is_refused(setup):
    with pytest.raises(KohaError, match="larger than 4_000 bytes"):
        setup.sync(max_page_bytes=4000)  # one page of three patrons is about 8 kB

    assert setup.cards() == {}


def test_patrons_sharing_one_card_number_get_nothing_by_it(setup, stub):
    stub.patrons.append(koha_patron(111, "2900 0001", born=date(1990, 1, 1), restricted=True, attributes=ACCEPTED))

    result = setup.sync()

    assert key("29000001") not in setup.cards() and len(setup.cards()) == 6
    assert "2 sharing a card number with another patron" in result.summary()


def test_the_next_link_is_followed_on_base_url_only(setup, stub):
    stub.link_host = "koha.internal:9"  # Koha behind a proxy names its own address; nothing listens there

    assert setup.sync().pages == 4
    assert len(stub.patron_requests()) == 4


@pytest.mark.parametrize("overrides, expected", [
    ({"X-Total-Count": None}, "no X-Total-Count header"),
    ({"X-Total-Count": "4", "Link": '<http://x/api/v1/patrons?_page=9&_per_page=3>; rel="next"'}, "keeps saying there is a next page"),
], ids=["no total", "a next page for ever"])
def test_paging_that_is_not_koha_s_ends_the_sync(setup, stub, overrides, expected):
    stub.header_overrides = overrides

    with pytest.raises(KohaError, match=expected):
        setup.sync()

    assert setup.cards() == {}
