"""The event log page: filters, pages, and the admin's card lookup that never keeps the number."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from device.cards import card_key
from device.events import Event

KEY = ("k" * 32).encode()
NUMBER = "10000001"
OTHER = "10000002"
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def staff(staff):
    staff.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return staff


@pytest.fixture
def admin(admin):
    admin.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return admin


def tap(ts=T0, door="entrance", reason="granted", number=OTHER, mode="self_service", kind="entrance"):
    return Event(ts=ts, door=door, type="tap", reason=reason, mode=mode, card_key=card_key(KEY, number), door_kind=kind)


def rows(html: str) -> int:
    return html.count("<tr>") - 1  # minus the header


def test_the_log_shows_translated_events_with_door_names_and_no_numbers(web_store, staff):
    web_store.record([tap(reason="blocked", number=NUMBER), tap(ts=T0 + timedelta(hours=1))])
    html = staff.get("/events").get_data(as_text=True)
    assert rows(html) == 2
    assert "Main entrance" in html and "Card blocked" in html
    assert "20.11.2026 13.00" in html  # newest first, local time
    assert html.index("20.11.2026 13.00") < html.index("20.11.2026 12.00")
    assert NUMBER not in html and card_key(KEY, NUMBER) not in html and card_key(KEY, NUMBER)[:8] in html


def test_an_empty_log_says_so(staff):
    assert "No events yet." in staff.get("/events").get_data(as_text=True)


def test_filters_by_door_result_and_local_dates(web_store, staff):
    web_store.record([
        tap(), tap(reason="blocked"), tap(door="booth", kind="booth"),
        # 23.30 local on the 21st is still the 21st, though it is 21.30 UTC.
        tap(ts=datetime(2026, 11, 21, 21, 30, tzinfo=timezone.utc), reason="card_expired"),
    ])
    assert rows(staff.get("/events?door=booth").get_data(as_text=True)) == 1
    assert rows(staff.get("/events?reason=blocked").get_data(as_text=True)) == 1
    html = staff.get("/events?from=2026-11-21&to=2026-11-21").get_data(as_text=True)
    assert rows(html) == 1 and "Card expired" in html
    assert rows(staff.get("/events?from=21.11.2026").get_data(as_text=True)) == 1  # the Finnish way too
    assert rows(staff.get("/events?to=2026-11-20&type=tap").get_data(as_text=True)) == 3


def test_bad_filters_are_refused_with_a_message_and_sql_stays_data(web_store, staff):
    web_store.record([tap()])
    response = staff.get("/events?door=' OR 1=1 --")
    assert response.status_code == 400 and "Door: choose one of the doors" in response.get_data(as_text=True)
    assert staff.get("/events?reason=nope").status_code == 400
    response = staff.get("/events?from=2026-11-22&to=2026-11-21")
    assert response.status_code == 400 and "must not be before" in response.get_data(as_text=True)
    assert staff.get("/events?from=tomorrow").status_code == 400
    assert staff.get("/events?before=1;DROP TABLE events").status_code == 400
    assert len(web_store.events()) == 1


def test_pages_of_fifty_follow_seq_newest_first(web_store, staff):
    web_store.record([tap(ts=T0 + timedelta(minutes=i)) for i in range(120)])
    first = staff.get("/events").get_data(as_text=True)
    assert rows(first) == 50 and "Older events" in first
    link = [part for part in first.split('"') if "before=" in part][0].replace("&amp;", "&")
    second = staff.get(link).get_data(as_text=True)
    assert rows(second) == 50 and "Newest events" in second
    assert "20.11.2026 12.00" not in first and "20.11.2026 12.00" not in second  # the oldest is on page 3
    third_link = [part for part in second.split('"') if "before=" in part][-1].replace("&amp;", "&")
    third = staff.get(third_link).get_data(as_text=True)
    assert rows(third) == 20 and "Older events" not in third and "20.11.2026 12.00" in third


def test_an_admin_finds_one_card_and_the_number_goes_nowhere(web_store, admin, branch_config):
    web_store.record([tap(number=NUMBER), tap(number=OTHER), tap(number=NUMBER, reason="blocked")])
    response = admin.post("/events/card", data={"card_number": NUMBER, "door": "entrance"})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert NUMBER not in location and f"card={card_key(KEY, NUMBER)}" in location and "door=entrance" in location
    html = admin.get(location).get_data(as_text=True)
    assert rows(html) == 2 and NUMBER not in html
    audit = web_store.conn.execute("SELECT action, target, detail FROM audit_log WHERE action = 'events.card_lookup'").fetchall()
    assert len(audit) == 1 and NUMBER not in json.dumps(audit)
    assert NUMBER.encode() not in branch_config.database.read_bytes()


def test_a_wrong_card_number_is_refused_without_echoing_it(admin):
    response = admin.post("/events/card", data={"card_number": "<b>not a card</b>"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "Card number:" in html and "not a card</b>" not in html


def test_staff_do_not_get_the_card_lookup(web_store, staff):
    html = staff.get("/events").get_data(as_text=True)
    assert "card_number" not in html
    assert staff.post("/events/card", data={"card_number": NUMBER}).status_code == 403
    assert staff.get(f"/events?card={card_key(KEY, NUMBER)}").status_code == 403
    assert web_store.conn.execute("SELECT count(*) FROM audit_log WHERE action = 'events.card_lookup'").fetchone()[0] == 0


def test_the_log_speaks_finnish(web_store, staff):
    web_store.record([tap(reason="blocked")])
    html = staff.get("/events", headers={"Accept-Language": "fi"}).get_data(as_text=True)
    assert "Tapahtumat" in html and "Kortti estetty" in html and "Omatoimiaika" in html
