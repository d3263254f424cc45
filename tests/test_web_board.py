"""The public booth board: free or in use, today's free slots, the entrance's hours; nothing personal."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from admin_web import branch_now
from device.policy import Reservation
from device.schedule import Period

EN = {"Accept-Language": "en"}
#: Wednesday 25.11.2026 14.00 in Helsinki.
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
CARD_KEY = "c0ffee1234567890deadbeefcafe0042"


def at(hour: int, minute: int = 0) -> datetime:
    """A Helsinki wall-clock time on the test day, in UTC (winter: UTC+2)."""
    return NOW.replace(hour=hour - 2, minute=minute)


@pytest.fixture
def booked(web_store, monkeypatch):
    """Open 8–21 today; the booth is taken 13.30–14.30 and 14.30–15.00, 16.00–17.00 and 17.15–18.00."""
    monkeypatch.setattr(branch_now, "utc_now", lambda: NOW)
    web_store.set_weekly({day: [Period(8 * 60, 16 * 60, "staffed"), Period(16 * 60, 21 * 60, "self_service")] for day in range(7)})
    web_store.put_reservations([
        Reservation("res-771", "smartblock-1", CARD_KEY, at(13, 30), at(14, 30)),
        Reservation("res-772", "smartblock-1", CARD_KEY, at(14, 30), at(15)),
        Reservation("res-773", "smartblock-1", CARD_KEY, at(16), at(17)),
        Reservation("res-774", "smartblock-1", CARD_KEY, at(17, 15), at(18)),
        # Neither a cancelled nor a merely requested reservation takes the booth.
        Reservation("res-775", "smartblock-1", CARD_KEY, at(19), at(20), state="cancelled"),
        Reservation("res-776", "smartblock-1", CARD_KEY, at(20), at(21), state="requested"),
    ])
    return web_store


def test_the_board_needs_no_login_and_shows_the_booth_in_use_and_its_free_slots(anonymous, booked):
    response = anonymous.get("/board", headers=EN)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Work booth" in page
    # Back-to-back reservations join up.
    assert "In use until 15.00" in page
    # 17.00–17.15 is too short to offer.
    assert "<li>15.00–16.00</li>" in page and "<li>18.00–21.00</li>" in page
    assert "17.00–17.15" not in page
    assert "Staffed until 16.00" in page
    assert "08.00–16.00 Staffed" in page and "16.00–21.00 Self-service" in page
    assert '<meta http-equiv="refresh" content="60">' in page


def test_the_board_shows_no_personal_data(anonymous, booked):
    booked.set_status("door:booth", {"state": "locked", "lockdown": False, "hold_until": None})
    page = anonymous.get("/board", headers=EN).get_data(as_text=True)
    assert CARD_KEY not in page and CARD_KEY[:6] not in page
    assert "res-77" not in page
    # No staff menu, no login form.
    assert "mainnav" not in page and "password" not in page


def test_a_free_booth(anonymous, booked, monkeypatch):
    monkeypatch.setattr(branch_now, "utc_now", lambda: at(15, 10))
    page = anonymous.get("/board", headers=EN).get_data(as_text=True)
    assert '<p class="board-status">Free</p>' in page
    assert "In use" not in page
    assert "<li>15.10–16.00</li>" in page


def test_after_closing_there_are_no_slots_left(anonymous, booked, monkeypatch):
    monkeypatch.setattr(branch_now, "utc_now", lambda: at(22))
    page = anonymous.get("/board", headers=EN).get_data(as_text=True)
    assert "No free time left today." in page
    assert "Closed until tomorrow 08.00" in page
    # Not reserved, but nobody should set out for a closed library thinking it is free.
    assert '<p class="board-status">Closed</p>' in page and ">Free<" not in page


@pytest.mark.parametrize("language, closed", [("fi", "Suljettu"), ("sv", "Stängt")])
def test_the_closed_booth_is_said_in_the_page_language(anonymous, booked, monkeypatch, language, closed):
    """The label is translated when the page is shown, not once when the template is compiled."""
    monkeypatch.setattr(branch_now, "utc_now", lambda: at(22))
    anonymous.get("/board", headers=EN)  # compiles the template in English first
    page = anonymous.get(f"/board?lang={language}", headers=EN).get_data(as_text=True)
    assert f'<p class="board-status">{closed}</p>' in page


def test_a_closed_day(anonymous, web_store, monkeypatch):
    monkeypatch.setattr(branch_now, "utc_now", lambda: NOW)
    web_store.set_exceptions({NOW.date(): []}, note="Holiday")
    page = anonymous.get("/board", headers=EN).get_data(as_text=True)
    assert "Closed today." in page and "No free time left today." in page


def test_the_board_may_be_framed_only_where_configured(anonymous, booked):
    headers = anonymous.get("/board").headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "<script" not in anonymous.get("/board").get_data(as_text=True)


def test_the_board_speaks_the_browser_language_or_the_one_asked_for(anonymous, booked):
    swedish = anonymous.get("/board", headers={"Accept-Language": "sv"}).get_data(as_text=True)
    assert '<html lang="sv">' in swedish and "Upptagen till kl. 15.00" in swedish
    finnish = anonymous.get("/board?lang=fi", headers=EN).get_data(as_text=True)
    assert '<html lang="fi">' in finnish and "Varattu klo 15.00 asti" in finnish
    english = anonymous.get("/board?lang=xx", headers=EN).get_data(as_text=True)
    assert '<html lang="en">' in english
