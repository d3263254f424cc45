"""A staff action and its audit entry are one transaction: the change is kept only with its entry.

The audit insert is made to fail in the database itself (a trigger), as a full
disk or a crash between the two writes would: the change must not be there
afterwards. Without the trigger the same request makes both, which shows each
check below can see the change it looks for.
"""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timedelta, timezone

import pytest

from admin_web import accounts, audit
from device.events import utc_text
from device.schedule import Period

# Wednesday 25 November 2026, noon in Helsinki: the exception dates below are ahead of it.
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)
CHRISTMAS, NEW_YEARS_EVE = date(2026, 12, 24), date(2026, 12, 31)


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch):
    monkeypatch.setattr("admin_web.branch_now.utc_now", lambda: NOW)


def _weekly_rows(store) -> int:
    return store.conn.execute("SELECT count(*) FROM weekly_periods").fetchone()[0]


ACTIONS = {
    "door.pulse": ("staff", "/doors/entrance/pulse", {}, lambda s: bool(s.pending_commands())),
    "door.lockdown": ("staff", "/doors/entrance/lockdown", {}, lambda s: bool(s.pending_commands())),
    "pin_lockout.clear": ("staff", "/today/pin-lockouts/ab12cd/clear", {}, lambda s: bool(s.pending_commands())),
    "hours.weekly": (
        "staff", "/hours/weekly", {"day0-0-start": "8", "day0-0-end": "16", "day0-0-mode": "staffed"},
        lambda s: _weekly_rows(s) > 0,
    ),
    "hours.exception.add": (
        "staff", "/hours/exceptions/new", {"date": "24.12.2026", "kind": "closed", "note": "Christmas Eve"},
        lambda s: bool(s.exception_days(CHRISTMAS, CHRISTMAS)),
    ),
    "hours.exception.delete": ("staff", "/hours/exceptions/2026-12-31/delete", {}, lambda s: not s.exception_days(NEW_YEARS_EVE, NEW_YEARS_EVE)),
    "cards.staff.add": (
        "admin", "/cards/staff", {"staff_number": "2040718893", "staff_note": "Maija"}, lambda s: bool(s.staff_cards()),
    ),
    "users.disable": ("admin", "/users/staff/disable", {}, lambda s: accounts.get_user(s, "staff").disabled),
}


@pytest.mark.parametrize("action", ACTIONS)
def test_a_change_whose_audit_entry_cannot_be_written_is_not_kept(request, web_store, action):
    who, url, form, changed = ACTIONS[action]
    client = request.getfixturevalue(who)
    web_store.set_exceptions({NEW_YEARS_EVE: [Period(600, 900, "staffed")]}, note="New Year's Eve")
    web_store.set_status("pin_lockouts", [{"card_key": "ab12cd" * 10 + "0000", "until": utc_text(NOW + timedelta(hours=1))}])
    entries = len(audit.entries(web_store))
    with web_store.conn:
        web_store.conn.execute("CREATE TRIGGER audit_fails BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END")

    with pytest.raises(sqlite3.IntegrityError, match="disk full"):
        client.post(url, data=form)
    assert not changed(web_store)
    assert len(audit.entries(web_store)) == entries

    with web_store.conn:
        web_store.conn.execute("DROP TRIGGER audit_fails")
    assert client.post(url, data=form).status_code == 302
    assert changed(web_store)
    assert audit.entries(web_store)[0]["action"] == action
