"""The Doors page: states, and the pulse, hold, lockdown and release commands with their confirmations."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from admin_web import audit, branch_now
from device.events import utc_text

EN = {"Accept-Language": "en"}
#: Wednesday 25.11.2026 14.00 in Helsinki.
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch):
    monkeypatch.setattr(branch_now, "utc_now", lambda: NOW)


def commands(store) -> list[dict]:
    return [dict(row) for row in store.db.query("SELECT door, action, until, requested_by, done_at FROM commands ORDER BY id")]


def test_anonymous_visitors_are_sent_to_the_login_and_nothing_is_queued(anonymous, web_store):
    for url in ("/doors", "/doors/entrance/state", "/doors/entrance/pulse"):
        response = anonymous.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    response = anonymous.post("/doors/entrance/pulse", data={})
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert commands(web_store) == []


def test_the_page_lists_each_door_with_its_state_and_actions(staff, web_store):
    web_store.set_status("door:entrance", {"state": "unlocked", "lockdown": False, "hold_until": "2026-11-25T16:00:00+00:00"})
    page = staff.get("/doors", headers=EN).get_data(as_text=True)
    assert "Main entrance" in page and "Work booth" in page
    assert "Unlocked" in page and "Held unlocked until 18.00" in page
    # The booth has never been reported by the device.
    assert "Unknown" in page and "has not reported this door yet" in page
    for action in ("pulse", "lockdown", "release", "hold"):
        assert f"/doors/entrance/{action}" in page
    assert 'data-live="/doors/entrance/state"' in page


@pytest.mark.parametrize("action, question", [
    ("pulse", "Unlock Main entrance for 5 seconds?"),
    ("lockdown", "Lock down Main entrance?"),
    ("release", "Release Main entrance?"),
])
def test_the_confirmation_page_says_what_will_happen_and_does_nothing(staff, web_store, action, question):
    response = staff.get(f"/doors/entrance/{action}", headers=EN)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert question in page
    assert 'method="post"' in page and "Confirm" in page and "Cancel" in page
    assert commands(web_store) == []


@pytest.mark.parametrize("action", ["pulse", "lockdown", "release"])
def test_confirming_queues_the_command_audits_it_and_returns_to_the_doors(staff, web_store, action):
    response = staff.post(f"/doors/entrance/{action}", data={}, headers=EN)
    assert response.status_code == 302 and response.headers["Location"].endswith("/doors")
    assert commands(web_store) == [{"door": "entrance", "action": action, "until": None, "requested_by": "staff", "done_at": None}]
    entry = audit.entries(web_store)[0]
    assert (entry["actor"], entry["action"], entry["target"]) == ("staff", f"door.{action}", "entrance")
    page = staff.get("/doors", headers=EN).get_data(as_text=True)
    assert "was sent to the door controller" in page
    assert "Waiting for the door controller" in page


def test_the_state_fragment_follows_the_device(staff, web_store):
    staff.post("/doors/booth/pulse", data={})
    html = staff.get("/doors/booth/state", headers=EN).get_data(as_text=True)
    assert "<html" not in html and "Waiting for the door controller: Pulse unlock (asked by staff)" in html
    # The device carries it out and publishes the new state.
    web_store.finish_command(web_store.pending_commands()[0].id, "done")
    web_store.set_status("door:booth", {"state": "unlocked", "lockdown": False, "hold_until": None})
    html = staff.get("/doors/booth/state", headers=EN).get_data(as_text=True)
    assert "Waiting" not in html and "Unlocked" in html


@pytest.mark.parametrize("until, local", [
    ("18.00", "2026-11-25 18:00"),
    ("18:30", "2026-11-25 18:30"),
    ("26.11.2026 8.00", "2026-11-26 08:00"),
    ("2026-11-26 09:15", "2026-11-26 09:15"),
])
def test_hold_until_a_local_time(staff, web_store, branch_config, until, local):
    confirm = staff.get("/doors/entrance/hold", query_string={"until": until}, headers=EN)
    assert confirm.status_code == 200 and "Keep Main entrance unlocked until" in confirm.get_data(as_text=True)
    assert commands(web_store) == []
    staff.post("/doors/entrance/hold", data={"until": until})
    expected = datetime.fromisoformat(local).replace(tzinfo=branch_config.tz)
    [row] = commands(web_store)
    assert row["action"] == "hold" and row["until"] == utc_text(expected)
    entry = audit.entries(web_store)[0]
    assert entry["action"] == "door.hold" and entry["detail"]["until"] == utc_text(expected)


def test_the_hold_page_without_a_time_asks_for_one(staff, web_store):
    response = staff.get("/doors/entrance/hold", headers=EN)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'name="until"' in page and "At most 24 hours ahead" in page


@pytest.mark.parametrize("until, message", [
    ("", "give the time the door should lock again"),
    ("six o'clock", "is not a time"),
    ("25.00", "is not a time"),
    ("31.2.2026 10.00", "is not a time"),
    ("13.00", "has already passed"),
    ("26.11.2026 14.01", "at most 24 hours"),
])
def test_bad_hold_times_are_refused_with_the_form_kept(staff, web_store, until, message):
    for response in (
        staff.get("/doors/entrance/hold", query_string={"until": until}, headers=EN),
        staff.post("/doors/entrance/hold", data={"until": until}, headers=EN),
    ):
        assert response.status_code == 400
        page = response.get_data(as_text=True)
        assert message in page and "Until:" in page
        assert f'value="{until}"'.replace("'", "&#39;") in page
    assert commands(web_store) == []
    assert not [e for e in audit.entries(web_store) if e["action"].startswith("door.")]


def test_unknown_doors_and_actions_are_404(staff, web_store):
    assert staff.get("/doors/back-door/pulse").status_code == 404
    assert staff.post("/doors/back-door/pulse", data={}).status_code == 404
    assert staff.get("/doors/back-door/state").status_code == 404
    assert staff.get("/doors/entrance/explode").status_code == 404
    assert commands(web_store) == []


def test_a_post_without_the_csrf_token_is_refused(staff, web_store):
    assert staff.post("/doors/entrance/pulse", data={"csrf_token": ""}).status_code == 400
    assert commands(web_store) == []


def test_doors_in_swedish(staff):
    page = staff.get("/doors/entrance/pulse", headers={"Accept-Language": "sv"}).get_data(as_text=True)
    assert "Lås upp Main entrance i 5 sekunder?" in page
    assert "Bekräfta" in page


def test_unlocking_a_locked_down_door_warns_that_it_stays_locked(staff, web_store):
    web_store.set_status("door:entrance", {"state": "locked", "lockdown": True, "hold_until": None})
    for url in ("/doors/entrance/pulse", "/doors/entrance/hold?until=18.00"):
        assert "is locked down, so it will not unlock until someone releases it" in staff.get(url, headers=EN).get_data(as_text=True)
    assert "is locked down" not in staff.get("/doors/entrance/release", headers=EN).get_data(as_text=True)
