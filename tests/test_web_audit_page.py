"""The audit page as staff read it: what changed, in their language, with door names, not the raw detail."""

from __future__ import annotations

import html
import re
from datetime import datetime, timezone

import pytest

from admin_web import audit
from device.schedule import Period

# Wednesday 25 November 2026, noon in Helsinki.
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)
FI = {"Accept-Language": "fi"}


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch):
    monkeypatch.setattr("admin_web.branch_now.utc_now", lambda: NOW)


def weekly_form(days: dict[int, tuple[str, str, str]]) -> dict:
    return {field: value for day, (start, end, mode) in days.items()
            for field, value in ((f"day{day}-0-start", start), (f"day{day}-0-end", end), (f"day{day}-0-mode", mode))}


def audit_rows(client, headers=FI) -> list[str]:
    """The audit table's rows as text, newest first."""
    page = client.get("/users/audit", headers=headers).get_data(as_text=True)
    rows = re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>", 1)[1], re.S)
    return [" | ".join(_text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)) for row in rows]


def _text(cell: str) -> str:
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", cell).split()))


def test_a_tuesday_only_change_shows_only_tuesday_in_the_users_language(admin, web_store):
    week = {day: ("8", "16", "staffed") for day in range(7)}
    web_store.set_weekly({day: (Period(480, 960, "staffed"),) for day in range(7)})
    assert admin.post("/hours/weekly", data=weekly_form(week | {1: ("9", "16", "staffed")})).status_code == 302
    row = audit_rows(admin)[0]
    assert "Viikon aukioloaikoja muutettu" in row
    assert "Tiistai: 8.00–16.00 palveluaika → 9.00–16.00 palveluaika" in row
    for raw in ("Maanantai", "Monday", "Tuesday", "staffed", "{", "'", "new:", "old:"):
        assert raw not in row, raw
    # The log itself keeps only the change too.
    assert audit.entries(web_store)[0]["detail"] == {"old": {"Tuesday": ["08:00–16:00 staffed"]},
                                                     "new": {"Tuesday": ["09:00–16:00 staffed"]}}
    swedish = audit_rows(admin, {"Accept-Language": "sv"})[0]
    assert "Tisdag: 8.00–16.00 betjänad tid → 9.00–16.00 betjänad tid" in swedish


def test_a_door_action_names_the_door_and_its_time(staff, admin, web_store):
    assert staff.post("/doors/entrance/hold", data={"until": "18.00"}).status_code == 302
    row = audit_rows(admin)[0]
    cells = row.split(" | ")
    assert cells[3] == "Main entrance"
    assert "25.11.2026 18.00" in cells[4] and "command" not in row and "until" not in row


def test_an_exception_day_reads_as_a_date_a_note_and_its_hours(staff, admin):
    form = {"date": "24.12.2026", "kind": "open", "note": "Jouluaatto",
            "period-0-start": "8", "period-0-end": "12", "period-0-mode": "self_service"}
    assert staff.post("/hours/exceptions/new", data=form).status_code == 302
    cells = audit_rows(admin)[0].split(" | ")
    assert cells[3] == "24.12.2026"
    assert "Huomautus: Jouluaatto" in cells[4] and "— → 8.00–12.00 omatoimiaika" in cells[4]
    assert staff.post("/hours/exceptions/2026-12-24/delete", data={}).status_code == 302
    assert "8.00–12.00 omatoimiaika → —" in audit_rows(admin)[0]


def test_an_unknown_action_is_still_shown_key_by_key(admin, web_store):
    audit.record(web_store, "console", "newer.thing", "x", {"count": 3, "note": None})
    assert "count: 3" in audit_rows(admin)[0] and "note: —" in audit_rows(admin)[0]


def test_an_entry_of_a_shape_this_version_does_not_write_is_shown_as_it_is(admin, web_store):
    audit.record(web_store, "console", "hours.weekly", "2026-13-45", {"old": ["x"], "new": 3})
    response = admin.get("/users/audit", headers=FI)
    assert response.status_code == 200
    row = audit_rows(admin)[0]
    assert "2026-13-45" in row and "new: 3" in row
