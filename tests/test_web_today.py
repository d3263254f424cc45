"""The Today page: hours now, doors, booth, visits, latest events and warnings, and the device heartbeat."""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import datetime, timedelta, timezone

import pytest
from gpiozero.pins.mock import MockFactory

from admin_web import branch_now
from device.controller import Controller
from device.events import Event, utc_text
from device.policy import Reservation
from device.schedule import Period
from device.store import Store

EN = {"Accept-Language": "en"}
#: Wednesday 25.11.2026 14.00 in Helsinki.
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
CARD_KEY = "c0ffee1234567890deadbeefcafe0042"
#: Every day: staffed 8–16, self-service 16–21, closed otherwise.
WEEKLY = {day: [Period(8 * 60, 16 * 60, "staffed"), Period(16 * 60, 21 * 60, "self_service")] for day in range(7)}


def at(hour: int, minute: int = 0, days: int = 0) -> datetime:
    """A Helsinki wall-clock time on the test day, in UTC (winter: UTC+2)."""
    return NOW.replace(hour=hour - 2, minute=minute) + timedelta(days=days)


def heartbeat(store: Store, age: timedelta) -> None:
    store.set_status("device", {"pid": 1, "started_at": utc_text(NOW)})
    with store.conn:
        store.conn.execute("UPDATE device_status SET updated_at = ? WHERE key = 'device'", (utc_text(NOW - age),))


@pytest.fixture
def branch_today(web_store, monkeypatch):
    """A branch at 14.00 on a staffed afternoon with a running device and some activity."""
    monkeypatch.setattr(branch_now, "utc_now", lambda: NOW)
    web_store.set_weekly(WEEKLY)
    heartbeat(web_store, timedelta(seconds=10))
    web_store.set_status("door:entrance", {"state": "open", "lockdown": False, "hold_until": None})
    web_store.set_status("door:booth", {"state": "locked", "lockdown": True, "hold_until": None})
    web_store.put_reservations([
        Reservation("res-now-771", "smartblock-1", CARD_KEY, at(13, 30), at(14, 30)),
        Reservation("res-next-773", "smartblock-1", CARD_KEY, at(14, 30), at(15)),
        Reservation("res-later-772", "smartblock-1", CARD_KEY, at(16), at(17)),
    ])
    web_store.record([
        Event(at(9), "entrance", "tap", "granted", "staffed", CARD_KEY),
        Event(at(9, 5), "entrance", "tap", "granted", "staffed", "aa" * 16),
        Event(at(13, 31), "booth", "tap", "granted", "staffed", CARD_KEY, door_kind="booth"),
        Event(at(13, 40), "entrance", "tap", "blocked", "staffed", "bb" * 16),
        Event(at(13, 50), "entrance", "command", mode="staffed", detail={"action": "pulse", "by": "staff", "command": 1}),
    ])
    return web_store


def test_anonymous_visitors_are_sent_to_the_login(anonymous):
    for url in ("/", "/today/live"):
        response = anonymous.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_today_shows_the_hours_doors_booth_visits_and_events(staff, branch_today):
    page = staff.get("/", headers=EN).get_data(as_text=True)
    assert "Staffed until 16.00" in page
    assert "08.00–16.00 Staffed" in page and "16.00–21.00 Self-service" in page
    assert "Main entrance" in page and "Open" in page
    assert "Locked down" in page
    assert "In use until 15.00" in page
    # Two staffed visits, one booth use, one denial.
    assert '<div class="big-number">2</div><div class="stat-label">Staffed</div>' in page
    assert '<div class="big-number">1</div><div class="stat-label">Booth uses</div>' in page
    assert "Card blocked" in page
    assert "Staff command: Pulse unlock (staff)" in page
    # Back-to-back reservations are one use; the next one is the one after them.
    assert "Next reservation:" in page and "16.00–17.00" in page and "14.30–15.00" not in page
    # A card is shown by a short prefix, never whole; reservations never by id.
    assert CARD_KEY[:6] in page and CARD_KEY not in page
    assert "res-now-771" not in page
    assert 'class="warning"' not in page


@pytest.mark.parametrize("hour, expected", [
    (17, "Self-service until 21.00"),
    (22, "Closed until tomorrow 08.00"),
    (6, "Closed until 08.00"),
])
def test_the_mode_and_its_next_change(staff, web_store, monkeypatch, hour, expected):
    monkeypatch.setattr(branch_now, "utc_now", lambda: at(hour))
    web_store.set_weekly(WEEKLY)
    assert expected in staff.get("/", headers=EN).get_data(as_text=True)


@pytest.mark.parametrize("language, expected, wrong", [
    ("en", "Self-service until 24.00", "tomorrow"),
    ("fi", "Omatoimiaika klo 24.00 asti", "huomenna"),
])
def test_self_service_until_midnight_ends_at_24(staff, web_store, monkeypatch, language, expected, wrong):
    """As the hours are written: open until 24.00 today, not "until tomorrow 00.00"."""
    monkeypatch.setattr(branch_now, "utc_now", lambda: at(22))
    web_store.set_weekly({day: [Period(8 * 60, 16 * 60, "staffed"), Period(16 * 60, 24 * 60, "self_service")] for day in range(7)})
    page = staff.get("/", headers={"Accept-Language": language}).get_data(as_text=True)
    mode = page.split('class="today-mode"', 1)[1].split("</p>", 1)[0]
    assert expected in mode and "00.00" not in mode and wrong not in mode


def test_a_closed_day_and_an_empty_log_are_said_plainly(staff, web_store, monkeypatch):
    monkeypatch.setattr(branch_now, "utc_now", lambda: NOW)
    web_store.set_weekly({})
    page = staff.get("/", headers=EN).get_data(as_text=True)
    assert "Closed all day" in page
    assert "No events yet" in page
    assert "Unknown" in page  # the device never published the doors


def test_the_live_fragment_is_the_page_body_without_the_frame(staff, branch_today):
    page = staff.get("/", headers=EN).get_data(as_text=True)
    assert 'data-live="/today/live"' in page and 'data-interval="3"' in page
    fragment = staff.get("/today/live", headers=EN)
    assert fragment.status_code == 200
    html = fragment.get_data(as_text=True)
    assert "<html" not in html and "Staffed until 16.00" in html
    # The fragment follows the device: the door closes and locks.
    branch_today.set_status("door:entrance", {"state": "locked", "lockdown": False, "hold_until": None})
    html = staff.get("/today/live", headers=EN).get_data(as_text=True)
    assert 'state-open">Open<' not in html and 'state-locked">Locked<' in html


def test_warns_when_the_device_is_silent_or_never_ran(staff, branch_today):
    heartbeat(branch_today, timedelta(seconds=89))
    assert "door controller" not in staff.get("/today/live", headers=EN).get_data(as_text=True)
    heartbeat(branch_today, timedelta(seconds=91))
    assert "The door controller has not been running since 13.58" in staff.get("/today/live", headers=EN).get_data(as_text=True)
    heartbeat(branch_today, timedelta(days=1, minutes=5))
    assert "not been running since 24.11.2026 13.55" in staff.get("/today/live", headers=EN).get_data(as_text=True)
    heartbeat(branch_today, timedelta(seconds=91))
    assert "Ovenohjain ei ole ollut käynnissä 13.58 jälkeen" in staff.get("/today/live", headers={"Accept-Language": "fi"}).get_data(as_text=True)
    assert "Dörrstyrningen har inte varit igång sedan 13.58" in staff.get("/today/live", headers={"Accept-Language": "sv"}).get_data(as_text=True)
    with branch_today.conn:
        branch_today.conn.execute("DELETE FROM device_status WHERE key = 'device'")
    assert "The door controller is not running" in staff.get("/today/live", headers=EN).get_data(as_text=True)


def test_warns_about_an_offline_reader(staff, branch_today):
    branch_today.set_status("reader:entrance", {"online": False, "detail": "serial port gone"})
    assert "The card reader of Main entrance is offline" in staff.get("/today/live", headers=EN).get_data(as_text=True)
    branch_today.set_status("reader:entrance", {"online": True, "detail": ""})
    assert "is offline" not in staff.get("/today/live", headers=EN).get_data(as_text=True)


def test_warns_about_a_stale_or_failing_sync(staff, branch_today):
    # max_offline_age is 72 h by default: a sync older than 36 h is stale.
    branch_today.note_sync_success("patrons", NOW - timedelta(hours=37))
    branch_today.note_sync_success("reservations", NOW - timedelta(hours=1))
    branch_today.note_sync_success("events", NOW - timedelta(minutes=5))
    branch_today.note_sync_error("events", "HTTP 503 from the central service", NOW - timedelta(minutes=1))
    html = staff.get("/today/live", headers=EN).get_data(as_text=True)
    assert "Patron permissions: last synced with the central service at 24.11.2026 01.00" in html
    assert "Booth reservations" not in html
    assert "Sending events: the last sync with the central service failed at 25.11.2026 13.59 (HTTP 503" in html


def test_today_in_swedish(staff, branch_today):
    page = staff.get("/", headers={"Accept-Language": "sv"}).get_data(as_text=True)
    assert "I dag" in page
    assert "Betjänad tid till kl. 16.00" in page
    assert "Besök i dag" in page


def test_a_device_that_stopped_cleanly_is_shown_as_not_running_at_once(staff, branch_today):
    branch_today.set_status("device", {"pid": 1, "started_at": utc_text(NOW), "stopped_at": utc_text(NOW - timedelta(minutes=3))})
    assert "The door controller has not been running since 13.57" in staff.get("/today/live", headers=EN).get_data(as_text=True)


def test_the_device_loop_writes_a_heartbeat_and_survives_a_failing_write(branch_config, monkeypatch):
    store = Store(branch_config.database)
    controller = Controller(branch_config, store, consortium_key=b"k" * 32, pin_factory=MockFactory(), start_readers=False)
    try:
        stop = threading.Event()
        controller.run(stop, on_tick=stop.set)
        beat = store.status()["device"]["value"]
        assert beat["pid"] == os.getpid() and beat["started_at"]

        def fail(*args):
            raise sqlite3.OperationalError("database is locked")

        monkeypatch.setattr(store, "set_status", fail)
        ticks = []
        stop.clear()
        controller.run(stop, on_tick=lambda: (ticks.append(1), len(ticks) >= 2 and stop.set()))
        assert len(ticks) == 2  # the loop went on after the heartbeat failed
    finally:
        controller.close()
        store.close()


def test_warns_when_the_library_system_did_not_answer_the_door(staff, branch_today):
    branch_today.set_status("sip2", {"breaker": "open", "last_success": None, "last_error_at": "2026-11-25T11:45:40.000000Z",
                                     "last_error": "cannot connect to 10.20.0.7:6001: Network is unreachable"})
    html = staff.get("/today/live", headers=EN).get_data(as_text=True)
    assert "The library system did not answer the door&#39;s card check at 25.11.2026 13.45" in html
    assert "Network is unreachable" in html
    branch_today.set_status("sip2", {"breaker": "closed", "last_success": "2026-11-25T11:50:00.000000Z",
                                     "last_error_at": "2026-11-25T11:45:40.000000Z", "last_error": "x"})
    assert "did not answer the door" not in staff.get("/today/live", headers=EN).get_data(as_text=True)
