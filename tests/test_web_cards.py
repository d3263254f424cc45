"""The Cards page: staff cards, local blocks and the patron CSV import, for admins only.

The card number typed on the page must reach the door as its card_key and go
nowhere else: not the database, the audit log or the page shown back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import tempfile
import threading
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests

from admin_web import audit, serve
from device.cards import card_key, load_consortium_key
from webclient import PASSWORDS, blueprint_routes

EN = {"Accept-Language": "en"}
NUMBER = "2040718893"
OTHER = "7731002468"


@pytest.fixture
def key_of(branch_config):
    consortium_key = load_consortium_key(branch_config.consortium_key_file)
    return lambda number: card_key(consortium_key, number)


def test_every_cards_route_refuses_staff(web_app, staff):
    routes = list(blueprint_routes(web_app, "cards"))
    assert len(routes) >= 7
    for method, url in routes:
        assert staff.open(url, method=method, data={"csrf_token": staff.csrf_token()}).status_code == 403, (method, url)


def test_the_page_explains_itself_when_there_is_nothing_yet(admin):
    page = admin.get("/cards", headers=EN).get_data(as_text=True)
    assert "No staff cards of this branch yet." in page
    assert "No card is blocked at this branch." in page
    assert "Import patrons from a CSV file" in page


def test_a_staff_card_added_opens_for_the_device_and_is_listed_and_audited(admin, web_store, key_of):
    response = admin.post("/cards/staff", data={"staff_number": NUMBER, "staff_note": "Maija's card"}, headers=EN)
    assert response.status_code == 302
    key = key_of(NUMBER)
    assert web_store.patron(key).local_staff
    page = admin.get("/cards", headers=EN).get_data(as_text=True)
    assert key[:8] in page and "Maija&#39;s card" in page and "added." in page
    entry = audit.entries(web_store)[0]
    assert (entry["action"], entry["target"], entry["detail"]) == ("cards.staff.add", key[:8], {"note": "Maija's card"})


def test_the_same_number_in_another_shape_is_the_same_card(admin, web_store, key_of):
    admin.post("/cards/staff", data={"staff_number": "20-4071 8893", "staff_note": "Maija"})
    again = admin.post("/cards/staff", data={"staff_number": NUMBER, "staff_note": "Maija again"}, headers=EN)
    assert again.status_code == 400
    assert "already a staff card" in again.get_data(as_text=True)
    assert len(web_store.staff_cards()) == 1 and web_store.patron(key_of(NUMBER)).local_staff


def test_removing_a_staff_card_asks_first_then_the_card_stops_being_staff(admin, web_store, key_of):
    admin.post("/cards/staff", data={"staff_number": NUMBER, "staff_note": "Lost card"})
    key = key_of(NUMBER)
    question = admin.get(f"/cards/staff/{key}/remove", headers=EN)
    assert question.status_code == 200 and "Remove staff card" in question.get_data(as_text=True)
    assert web_store.patron(key).local_staff  # asking removes nothing
    assert admin.post(f"/cards/staff/{key}/remove", data={}).status_code == 302
    assert web_store.patron(key) is None
    assert audit.entries(web_store)[0]["action"] == "cards.staff.remove"
    # A second removal (another tab) is a friendly message, not an error.
    late = admin.post(f"/cards/staff/{key}/remove", data={}, headers=EN, follow_redirects=True)
    assert "no longer on the list" in late.get_data(as_text=True)


@pytest.mark.parametrize("until", ["24.12.2099", "2099-12-24"])
def test_a_local_block_stops_the_card_until_its_last_day(admin, web_store, key_of, until):
    response = admin.post("/cards/blocks", data={"block_number": NUMBER, "block_note": "Damaged the booth", "block_until": until})
    assert response.status_code == 302
    key = key_of(NUMBER)
    assert web_store.patron(key, today=date(2099, 12, 24)).local_block == "Damaged the booth"
    assert web_store.patron(key, today=date(2099, 12, 25)) is None
    page = admin.get("/cards", headers=EN).get_data(as_text=True)
    assert "24.12.2099" in page and "Damaged the booth" in page
    entry = audit.entries(web_store)[0]
    assert entry["action"] == "cards.block.add" and entry["detail"] == {"note": "Damaged the booth", "until": "2099-12-24"}


def test_a_block_without_an_end_date_and_its_removal(admin, web_store, key_of):
    admin.post("/cards/blocks", data={"block_number": NUMBER, "block_note": "Banned", "block_until": ""})
    key = key_of(NUMBER)
    assert web_store.patron(key, today=date(2199, 1, 1)).local_block == "Banned"
    assert "No end date" in admin.get("/cards", headers=EN).get_data(as_text=True)
    assert admin.post(f"/cards/blocks/{key}/remove", data={}).status_code == 302
    assert web_store.patron(key) is None
    assert audit.entries(web_store)[0]["action"] == "cards.block.remove"


def test_expired_blocks_are_listed_apart(admin, web_store, key_of):
    web_store.add_local_block(key_of(OTHER), "Old ban", "admin", until=date.today() - timedelta(days=3))
    page = admin.get("/cards", headers=EN).get_data(as_text=True)
    assert "No card is blocked at this branch." in page
    assert "Expired blocks (1)" in page and "Old ban" in page


@pytest.mark.parametrize("form, field_text", [
    ({"block_note": "", "block_until": ""}, "Reason: write why the card is blocked."),
    ({"block_note": "x", "block_until": "2020-01-01"}, "Blocked until: that date is already past."),
    ({"block_note": "x", "block_until": "31.2.2099"}, "Blocked until: write a date such as 24.12.2026"),
    ({"block_note": "x", "block_until": "next week"}, "Blocked until: write a date such as 24.12.2026"),
    ({"block_note": "x" * 201, "block_until": ""}, "At most 200 characters."),
])
def test_a_bad_block_is_refused_naming_the_field_and_keeping_the_other_values(admin, web_store, form, field_text):
    response = admin.post("/cards/blocks", data={"block_number": NUMBER, **form}, headers=EN)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert field_text in page
    if form["block_until"]:
        assert f'value="{form["block_until"]}"' in page
    assert NUMBER not in page
    assert web_store.local_blocks() == []


@pytest.mark.parametrize("number, text", [
    ("", "Card number: type the number, or tap the card on the USB reader."),
    ("12ä45", "Card number: use the letters and digits of the card"),
    ("1" * 65, "Card number: use the letters and digits of the card"),
])
def test_a_bad_card_number_is_refused_without_showing_it_back(admin, web_store, number, text):
    response = admin.post("/cards/staff", data={"staff_number": number, "staff_note": "Maija"}, headers=EN)
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and text in page
    assert 'value="Maija"' in page
    if number:
        assert number not in page
    assert web_store.staff_cards() == []


def test_the_card_number_may_not_be_written_into_the_note(admin, web_store):
    response = admin.post("/cards/staff", data={"staff_number": NUMBER, "staff_note": "Maija, card 2040 7188 93"}, headers=EN)
    assert response.status_code == 400
    assert "Do not write the card number here" in response.get_data(as_text=True)
    assert web_store.staff_cards() == []


def test_a_block_on_a_local_staff_card_is_refused_because_it_would_not_stop_it(admin, web_store, key_of):
    admin.post("/cards/staff", data={"staff_number": NUMBER, "staff_note": "Maija"})
    response = admin.post("/cards/blocks", data={"block_number": NUMBER, "block_note": "Lost", "block_until": ""}, headers=EN)
    assert response.status_code == 400
    assert "Remove it from the staff cards first." in response.get_data(as_text=True)
    assert web_store.patron(key_of(NUMBER)).local_block is None


def test_a_blocked_card_cannot_be_made_a_staff_card(admin, web_store, key_of):
    admin.post("/cards/blocks", data={"block_number": NUMBER, "block_note": "Banned", "block_until": ""})
    response = admin.post("/cards/staff", data={"staff_number": NUMBER, "staff_note": "Maija"}, headers=EN)
    assert response.status_code == 400 and "Remove the block first" in response.get_data(as_text=True)
    assert not web_store.patron(key_of(NUMBER)).local_staff


def test_a_script_in_a_note_is_shown_as_text(admin):
    admin.post("/cards/staff", data={"staff_number": NUMBER, "staff_note": "<script>alert(1)</script>"})
    admin.post("/cards/blocks", data={"block_number": OTHER, "block_note": "<script>alert(2)</script>", "block_until": ""})
    page = admin.get("/cards").get_data(as_text=True)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;script&gt;alert(2)&lt;/script&gt;" in page


def test_the_raw_card_number_is_stored_nowhere(admin, web_store, branch_config):
    pages = [
        admin.post("/cards/staff", data={"staff_number": NUMBER, "staff_note": "Maija"}, follow_redirects=True),
        admin.post("/cards/blocks", data={"block_number": OTHER, "block_note": "Banned", "block_until": "1.1.2099"}, follow_redirects=True),
        admin.post("/cards/blocks", data={"block_number": NUMBER, "block_note": "", "block_until": ""}),
        admin.post("/cards/import", data={"csv_file": (io.BytesIO(f"card_number\n{NUMBER}\n".encode()), "p.csv")}, follow_redirects=True),
    ]
    for page in pages:
        assert NUMBER not in page.get_data(as_text=True) and OTHER not in page.get_data(as_text=True)
    assert web_store.staff_cards() and web_store.local_blocks() and web_store.patron_count() == 1
    tables = [row[0] for row in web_store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        for row in web_store.conn.execute(f'SELECT * FROM "{table}"'):
            for value in row:
                assert NUMBER not in str(value) and OTHER not in str(value), table
    for suffix in ("", "-wal"):
        stored = branch_config.database.with_name(branch_config.database.name + suffix)
        if stored.exists():
            assert NUMBER.encode() not in stored.read_bytes() and OTHER.encode() not in stored.read_bytes()


# -- patron CSV ------------------------------------------------------------------
def _upload(client, text: str, replace: bool = False):
    data = {"csv_file": (io.BytesIO(text.encode("utf-8")), "patrons.csv")}
    if replace:
        data["replace"] = "1"
    return client.post("/cards/import", data=data, headers=EN, follow_redirects=True, content_type="multipart/form-data")


def test_a_good_csv_is_imported_with_the_count_and_the_ageless_warning(admin, web_store, key_of):
    response = _upload(admin, "card_number,self_service,age_ok_from\n10000001,1,2000-01-01\n10000002,1,\n")
    page = response.get_data(as_text=True)
    assert "Imported 2 patrons from the file." in page
    assert "1 patrons have no age_ok_from date" in page
    assert web_store.patron(key_of("10000001")).self_service
    entry = audit.entries(web_store)[0]
    assert entry["action"] == "cards.import" and entry["detail"] == {"count": 2, "replace": False, "ageless": 1}


def test_a_bad_csv_names_the_line_and_imports_nothing(admin, web_store):
    _upload(admin, "card_number\n10000009\n")
    response = _upload(admin, "card_number,valid_until\n10000001,2030-01-01\n10000002,someday\n")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Nothing was imported." in page and "line 3, valid_until" in page
    assert web_store.patron_count() == 1
    assert audit.entries(web_store)[0]["action"] == "cards.import"  # only the first, good import


def test_replacing_with_an_empty_file_is_refused(admin, web_store):
    _upload(admin, "card_number\n10000009\n")
    response = _upload(admin, "card_number\n", replace=True)
    assert response.status_code == 400 and "Nothing was imported." in response.get_data(as_text=True)
    assert web_store.patron_count() == 1


def test_replace_swaps_the_whole_list(admin, web_store, key_of):
    _upload(admin, "card_number\n10000009\n")
    _upload(admin, "card_number\n10000001\n", replace=True)
    assert web_store.patron(key_of("10000009")) is None and web_store.patron(key_of("10000001")) is not None


def test_the_page_shows_the_last_import(admin, web_store):
    _upload(admin, "card_number,age_ok_from\n10000001,2000-01-01\n10000002,2000-01-01\n")
    page = admin.get("/cards", headers=EN).get_data(as_text=True)
    assert "Last import: 2 patrons" in page and "by admin." in page


def test_the_progress_region_follows_an_import_run_from_anywhere(admin, web_store):
    """The page polls it while the upload is being read, and it shows an import from the console too."""
    web_store.set_status("patron_import", {"state": "running", "by": "console:root", "bytes": 3 * 2**20,
                                           "total": 32 * 2**20, "rows": 75_000})
    region = admin.get("/cards/import/progress", headers=EN).get_data(as_text=True)
    assert "An import started by console:root is running." in region
    assert "9 % of 32.0 MB read, 75\u00a0000 rows." in region
    assert f'<progress max="{32 * 2**20}" value="{3 * 2**20}">' in region
    # A process killed mid-import writes no more progress: after a minute the page says it stopped.
    with web_store.conn:
        web_store.conn.execute("UPDATE device_status SET updated_at = '2000-01-01T00:00:00.000000Z' WHERE key = 'patron_import'")
    region = admin.get("/cards/import/progress", headers=EN).get_data(as_text=True)
    assert "The import started by console:root stopped before it was done" in region


def test_the_progress_region_is_for_admins_only(staff):
    assert staff.get("/cards/import/progress").status_code == 403


@pytest.fixture
def temp_files(monkeypatch):
    """Every file opened in the temporary directory from now on, as Werkzeug's spooling of a big upload would."""
    temp_dir, real_open, opened = Path(tempfile.gettempdir()).resolve(), os.open, []

    def watching_open(path, flags, *args, **kwargs):
        if temp_dir in (Path(path).resolve(), Path(path).resolve().parent):
            opened.append(path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", watching_open)
    return opened


@pytest.fixture
def served(web_app, branch_config):
    """The staff page as the branch runs it, under waitress (admin_web/serve.py), on a free local port.
    The client talks plain HTTP to it, not through the HTTPS proxy, so the cookie may go over HTTP."""
    plain = dataclasses.replace(branch_config, web=dataclasses.replace(branch_config.web, secure_cookies=False))
    server = serve.make_server(plain, host="127.0.0.1", port=0)

    def run():
        with contextlib.suppress(OSError):  # closing the socket ends run() with EBADF, as in serve()
            server.run()

    threading.Thread(target=run, daemon=True).start()
    browser = requests.Session()
    url = f"http://127.0.0.1:{server.effective_port}"
    browser.post(f"{url}/login", data={"csrf_token": _page_token(browser, url), "username": "admin", "password": PASSWORDS["admin"]})
    yield browser, url
    browser.close()
    server.close()


def _page_token(browser, url: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', browser.get(f"{url}/login").text).group(1)


def test_under_waitress_a_big_csv_stays_in_memory_and_a_too_big_one_is_explained(served, web_store, key_of, temp_files):
    """Werkzeug and waitress both spool a body over 500 KB to disk; the raw card numbers in these must stay in memory."""
    browser, url = served
    rows = "".join(f"{10_000_000 + n},1,,,2000-01-01,0\n" for n in range(30_000))
    big = "card_number,self_service,blocked_reason,valid_until,age_ok_from,staff\n" + rows
    assert len(big) > 500 * 1024
    response = browser.post(f"{url}/cards/import", data={"csrf_token": _page_token(browser, url)},
                            files={"csv_file": ("patrons.csv", big.encode())}, headers=EN)
    assert "Imported 30000 patrons from the file." in response.text
    assert web_store.patron(key_of("10029999")) is not None

    too_big = b"card_number\n" + b"10000001\n" * (40 * 1024 * 1024 // 9)
    response = browser.post(f"{url}/cards/import", data={"csrf_token": _page_token(browser, url), "replace": "1"},
                            files={"csv_file": ("patrons.csv", too_big)}, headers=EN)
    assert response.status_code == 413
    assert "The file is too large to upload: at most 32 MB at a time. Nothing was changed." in response.text
    assert web_store.patron_count() == 30_000
    assert temp_files == []


@pytest.mark.parametrize("headers, text", [
    (EN, "The file is too large to upload: at most 32 MB at a time."),
    ({"Accept-Language": "fi"}, "Tiedosto on liian suuri lähetettäväksi: enintään 32 Mt kerrallaan."),
])
def test_an_upload_over_the_limit_is_refused_with_a_page_that_says_so(admin, web_store, headers, text):
    too_big = io.BytesIO(b"card_number\n" + b"10000001\n" * (32 * 1024 * 1024 // 9))
    response = admin.post("/cards/import", data={"csv_file": (too_big, "patrons.csv")}, headers=headers,
                          content_type="multipart/form-data")
    assert response.status_code == 413
    page = response.get_data(as_text=True)
    assert text in page and 'href="/cards"' in page
    assert web_store.patron_count() == 0


@pytest.mark.parametrize("payload, text", [
    (None, "Choose the CSV file to import."),
    ("card_number\n1000\xe4\n".encode("latin-1"), "The file is not UTF-8 text."),
])
def test_a_missing_or_unreadable_file_is_explained(admin, payload, text):
    data = {} if payload is None else {"csv_file": (io.BytesIO(payload), "p.csv")}
    response = admin.post("/cards/import", data=data, headers=EN, content_type="multipart/form-data")
    assert response.status_code == 400 and text in response.get_data(as_text=True)


def test_after_a_refused_block_the_page_says_to_enter_the_number_again(admin):
    response = admin.post("/cards/blocks", data={"block_number": NUMBER, "block_note": "", "block_until": ""}, headers=EN)
    page = response.get_data(as_text=True)
    assert "Type or scan the card number again" in page and NUMBER not in page
