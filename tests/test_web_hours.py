"""The Hours page: weekly pattern, dated exceptions, Kirkanta import and the 14-day preview."""

from __future__ import annotations

import io
import json
import re
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from admin_web import audit
from device.schedule import Period
from test_kirkanta import GOOD
from webclient import WebClient, make_app, write_branch

HELSINKI = ZoneInfo("Europe/Helsinki")
# Wednesday 25 November 2026, noon in Helsinki.
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch):
    monkeypatch.setattr("admin_web.branch_now.utc_now", lambda: NOW)


@pytest.fixture
def staff_en(staff):
    staff.post("/language", data={"language": "en"})
    return staff


def weekly_form(days: dict[int, list[tuple[str, str, str]]], **extra) -> dict:
    form = {}
    for weekday, rows in days.items():
        for number, (start, end, mode) in enumerate(rows):
            form |= {f"day{weekday}-{number}-start": start, f"day{weekday}-{number}-end": end, f"day{weekday}-{number}-mode": mode}
    return form | extra


def preview_row(html: str, label: str) -> str:
    """The text of the preview's row for a day ("Mon 30.11."), tags stripped."""
    rows = re.findall(r'<li class="timeline-day.*?</li>', html, re.S)
    found = [row for row in rows if label in row]
    assert len(found) == 1, f"no single preview row for {label}"
    return found[0]


def text_of(fragment: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", "", fragment).split())


def last_audit(store, action: str) -> dict:
    return next(entry for entry in audit.entries(store) if entry["action"] == action)


def test_the_page_shows_the_preview_weekly_hours_and_friendly_empty_states(staff_en):
    page = staff_en.get("/hours")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "The next 14 days" in html
    assert len(re.findall(r'<li class="timeline-day', html)) == 14
    assert "Wed 25.11." in preview_row(html, "Wed 25.11.") and "Today" in preview_row(html, "Wed 25.11.")
    assert "No exceptions coming up" in html
    assert "Closed all day" in text_of(preview_row(html, "Mon 30.11."))


def test_anonymous_visitors_are_sent_to_the_login_page(anonymous, web_store):
    assert "/login" in anonymous.get("/hours").headers["Location"]
    response = anonymous.post("/hours/weekly", data=weekly_form({0: [("8", "16", "staffed")]}))
    assert "/login" in response.headers["Location"]
    assert web_store.schedule(HELSINKI).weekly == {}


def test_staff_save_a_weekly_pattern_typed_the_finnish_way_and_see_it_in_the_preview(staff_en, web_store):
    revision = web_store.hours_revision()
    response = staff_en.post("/hours/weekly", data=weekly_form({0: [("8.00", "12", "self_service"), ("12:00", "18.00", "staffed")]}))
    assert response.status_code == 302
    schedule = web_store.schedule(HELSINKI)
    assert schedule.weekly[0] == (Period(480, 720, "self_service"), Period(720, 1080, "staffed"))
    assert set(schedule.weekly) == {0}
    assert web_store.hours_revision() > revision  # the device reloads its hours

    html = staff_en.get("/hours").get_data(as_text=True)
    assert "The weekly hours were saved" in html
    assert "8.00–12.00 self-service, 12.00–18.00 staffed" in text_of(preview_row(html, "Mon 30.11."))
    assert "Closed all day" in text_of(preview_row(html, "Tue 1.12."))

    entry = last_audit(web_store, "hours.weekly")
    assert entry["actor"] == "staff"
    assert entry["detail"]["old"]["Monday"] == []
    assert entry["detail"]["new"]["Monday"] == ["08:00–12:00 self_service", "12:00–18:00 staffed"]


def test_the_form_shows_the_saved_periods_and_a_ticked_remove_deletes_one(staff_en, web_store):
    staff_en.post("/hours/weekly", data=weekly_form({2: [("8", "12", "self_service"), ("12", "24.00", "staffed")]}))
    form = staff_en.get("/hours/weekly").get_data(as_text=True)
    assert 'name="day2-1-end" value="24.00"' in form
    assert 'name="day2-2-start" value=""' in form  # an empty row to add a period

    staff_en.post("/hours/weekly", data=weekly_form({2: [("8", "12", "self_service"), ("12", "24.00", "staffed")]}, **{"day2-0-remove": "1"}))
    assert web_store.schedule(HELSINKI).weekly[2] == (Period(720, 1440, "staffed"),)


@pytest.mark.parametrize(
    "days, message",
    [
        ({0: [("12.00", "14.00", "staffed"), ("13.00", "15.00", "self_service")]}, "Monday: 12.00–14.00 overlaps 13.00–15.00"),
        ({1: [("18.00", "17.00", "staffed")]}, "Tuesday: 18.00–17.00 ends before it starts"),
        ({4: [("9", "9.00", "staffed")]}, "Friday: 9.00–9.00 starts and ends at the same time"),
        ({5: [("8.75", "12", "staffed")]}, "Saturday: “8.75” is not a time"),
        ({6: [("24.00", "24.00", "staffed")]}, "Sunday: 24.00 can only end a period"),
        ({3: [("8", "", "staffed")]}, "Thursday: a period needs both a start and an end time"),
        ({0: [("8", "12", "open_all_night")]}, "Monday: choose staffed, self-service or closed for 8.00–12.00"),
    ],
)
def test_bad_periods_are_refused_naming_the_day_and_keeping_the_input(staff_en, web_store, days, message):
    staff_en.post("/hours/weekly", data=weekly_form({2: [("10", "16", "staffed")]}))
    response = staff_en.post("/hours/weekly", data=weekly_form({2: [("10", "16", "staffed")]} | days))
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in html
    assert "Nothing was saved" in html
    assert "period-row-error" in html
    weekday, rows = next(iter(days.items()))
    assert f'name="day{weekday}-0-start" value="{rows[0][0]}"' in html
    assert web_store.schedule(HELSINKI).weekly == {2: (Period(600, 960, "staffed"),)}


def test_errors_on_two_days_are_all_shown_in_finnish(staff, web_store):
    response = staff.post("/hours/weekly", data=weekly_form({0: [("12", "11", "staffed")], 1: [("8", "12", "staffed"), ("11", "13", "staffed")]}))
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Maanantai: 12.00–11.00 päättyy ennen kuin alkaa" in html
    assert "Tiistai: 8.00–12.00 menee päällekkäin jakson 11.00–13.00 kanssa" in html


def add_exception(client, **form):
    return client.post("/hours/exceptions/new", data={"kind": "closed", "note": ""} | form)


def test_a_holiday_added_and_deleted_shows_in_the_preview_and_the_audit_log(staff_en, web_store):
    staff_en.post("/hours/weekly", data=weekly_form({3: [("8", "20", "self_service")]}))
    response = add_exception(staff_en, date="24.12.2026", note="Christmas Eve")
    assert response.status_code == 302
    assert web_store.exception_days() == [
        {"date": date(2026, 12, 24), "note": "Christmas Eve", "source": "local", "periods": ()}
    ]
    html = staff_en.get("/hours?from=21.12.2026").get_data(as_text=True)
    row = text_of(preview_row(html, "Thu 24.12."))
    assert "Closed all day" in row and "Exception: Christmas Eve" in row
    assert "8.00–20.00 self-service" in text_of(preview_row(html, "Thu 31.12."))
    assert last_audit(web_store, "hours.exception.add")["detail"] == {"note": "Christmas Eve", "old": None, "new": []}

    assert staff_en.post("/hours/exceptions/2026-12-24/delete", data={}).status_code == 302
    assert web_store.exception_days() == []
    html = staff_en.get("/hours?from=2026-12-21").get_data(as_text=True)
    assert "8.00–20.00 self-service" in text_of(preview_row(html, "Thu 24.12."))
    entry = last_audit(web_store, "hours.exception.delete")
    assert entry["target"] == "2026-12-24" and entry["detail"]["old"] == []


def test_extended_hours_on_one_day_can_be_added_and_changed(staff_en, web_store):
    response = add_exception(staff_en, date="2026-12-31", kind="open", **{
        "period-0-start": "7", "period-0-end": "22.00", "period-0-mode": "self_service",
        "period-1-start": "", "period-1-end": "", "period-1-mode": "staffed",
    })
    assert response.status_code == 302
    assert web_store.exception_days()[0]["periods"] == (Period(420, 1320, "self_service"),)

    form = staff_en.get("/hours/exceptions/2026-12-31").get_data(as_text=True)
    assert 'value="7.00"' in form and 'value="22.00"' in form
    staff_en.post("/hours/exceptions/2026-12-31", data={
        "kind": "open", "note": "New Year's Eve",
        "period-0-start": "7", "period-0-end": "12", "period-0-mode": "self_service",
        "period-1-start": "12", "period-1-end": "16", "period-1-mode": "staffed",
    })
    assert web_store.exception_days()[0]["periods"] == (Period(420, 720, "self_service"), Period(720, 960, "staffed"))
    entry = last_audit(web_store, "hours.exception.edit")
    assert entry["detail"]["old"] == ["07:00–22:00 self_service"]
    assert entry["detail"]["new"] == ["07:00–12:00 self_service", "12:00–16:00 staffed"]


@pytest.mark.parametrize(
    "form, message",
    [
        ({"date": "24.11.2026"}, "Date: 24.11.2026 has passed"),
        ({"date": "2029-01-01"}, "Date: 1.1.2029 is more than two years ahead"),
        ({"date": "31.2.2027"}, "Date: “31.2.2027” is not a date. Write it as 24.12.2026 or 2026-12-24."),
        ({"date": ""}, "Date: enter a date"),
        ({"date": "1.12.2026", "kind": "open"}, "Hours: add at least one period"),
        ({"date": "1.12.2026", "kind": "open", "period-0-start": "16", "period-0-end": "8", "period-0-mode": "staffed"},
         "1.12.2026: 16.00–8.00 ends before it starts"),
        ({"date": "1.12.2026", "note": "x" * 201}, "Note: at most 200 characters"),
        ({"date": "1.12.2026", "period-0-start": "10", "period-0-end": "14", "period-0-mode": "staffed"},
         "Hours: you chose “Closed all day” but also wrote times"),
    ],
)
def test_a_bad_exception_is_refused_with_what_to_fix(staff_en, web_store, form, message):
    response = add_exception(staff_en, **form)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in html
    assert f'value="{form["date"]}"' in html
    assert web_store.exception_days() == []


def test_a_day_with_an_exception_is_not_added_twice(staff_en, web_store):
    add_exception(staff_en, date="24.12.2026", note="Christmas Eve")
    response = add_exception(staff_en, date="2026-12-24", note="again")
    assert response.status_code == 400
    assert "24.12.2026 already has its own hours" in response.get_data(as_text=True)
    assert web_store.exception_days()[0]["note"] == "Christmas Eve"


def test_a_script_in_a_note_is_shown_as_text(staff_en, web_store):
    add_exception(staff_en, date="1.12.2026", note="<script>alert(1)</script>")
    html = staff_en.get("/hours").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html


def upload(client, content: bytes, name: str = "schedules.json"):
    return client.post("/hours/import", data={"file": (io.BytesIO(content), name)}, content_type="multipart/form-data")


def test_a_kirkanta_file_is_imported_and_audited(staff_en, web_store):
    response = upload(staff_en, json.dumps(GOOD).encode())
    assert response.status_code == 302
    html = staff_en.get("/hours?from=2026-12-21").get_data(as_text=True)
    assert "Imported the hours of 3 days, 23.11.2026–25.12.2026." in html
    assert "8.00–12.00 self-service" in text_of(preview_row(html, "Thu 24.12."))
    assert "Closed all day" in text_of(preview_row(html, "Fri 25.12."))
    # Kirkanta's name for the holiday is the day's note; a day without one says where it came from.
    assert "Joulupäivä" in text_of(preview_row(html, "Fri 25.12."))
    assert {row["date"].isoformat(): row["note"] for row in web_store.exception_days()} == {
        "2026-11-23": "Kirkanta", "2026-12-24": "Kirkanta", "2026-12-25": "Joulupäivä"}
    assert {row["source"] for row in web_store.exception_days()} == {"kirkanta"}
    entry = last_audit(web_store, "hours.import")
    assert entry["detail"]["days"] == 3
    assert entry["detail"]["changes"]["2026-12-25"] == {"old": None, "new": []}


def test_a_bad_kirkanta_file_imports_nothing_and_says_what_is_wrong(staff_en, web_store):
    bad = json.loads(json.dumps(GOOD))
    bad["items"][1]["times"][0]["status"] = 7
    response = upload(staff_en, json.dumps(bad).encode())
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "nothing was changed" in html
    assert "items[1] (2026-12-24).times[0].status: 7 is not one of" in html
    assert web_store.exception_days() == []
    assert not [entry for entry in audit.entries(web_store) if entry["action"] == "hours.import"]

    assert "Choose the Kirkanta JSON file first" in staff_en.post("/hours/import", data={}).get_data(as_text=True)
    assert upload(staff_en, b"\xff not json").status_code == 400


def test_a_dst_day_is_25_hours_long_in_the_preview(staff_en, web_store):
    # 2026-10-25 is the Sunday the clocks go back from 4.00 to 3.00.
    staff_en.post("/hours/weekly", data=weekly_form({6: [("2.00", "5.00", "self_service")]}))
    html = staff_en.get("/hours?from=2026-10-25").get_data(as_text=True)
    autumn = preview_row(html, "Sun 25.10.")
    assert "this day has 25 hours" in text_of(autumn)
    assert "2.00–5.00 self-service" in text_of(autumn)
    # Three wall-clock hours last four real ones: 4/25 of the bar, starting at 2/25.
    assert '<rect class="bar-self_service" x="80.00" y="0" width="160.00"' in autumn
    ordinary = preview_row(html, "Sun 1.11.")
    assert '<rect class="bar-self_service" x="83.33" y="0" width="125.00"' in ordinary
    assert "hours" not in text_of(ordinary).replace("2.00–5.00", "")


def test_a_preview_date_that_is_not_a_date_is_refused(staff_en):
    response = staff_en.get("/hours?from=tomorrow")
    assert response.status_code == 400
    assert "Show from: “tomorrow” is not a date" in response.get_data(as_text=True)


def test_hours_managed_centrally_cannot_be_changed_here(tmp_path):
    config = write_branch(tmp_path, '\n[central]\nbase_url = "https://central.example.fi/api"\ntoken_file = "central.token"\n'
                                    "hours_managed_centrally = true\n")
    app = make_app(config)
    app.test_client_class = WebClient
    client = app.test_client()
    client.login("staff")
    client.post("/language", data={"language": "en"})
    page = client.get("/hours").get_data(as_text=True)
    assert "managed by the central service" in page
    assert "Edit weekly hours" not in page
    refused = client.post("/hours/weekly", data=weekly_form({0: [("8", "16", "staffed")]}))
    assert refused.status_code == 403
    assert "cannot be changed here" in refused.get_data(as_text=True)
    assert upload(client, json.dumps(GOOD).encode()).status_code == 403


def test_a_year_of_imported_days_does_not_flood_the_list_of_exceptions(staff_en, web_store):
    first = date(2026, 11, 25)
    web_store.set_exceptions({first + timedelta(days=n): (Period(480, 1200, "self_service"),) for n in range(365)}, source="kirkanta")
    html = staff_en.get("/hours").get_data(as_text=True)
    assert html.count('href="/hours/exceptions/2') == 31
    assert "And 334 more later" in html
