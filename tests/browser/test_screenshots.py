"""Every page at a desk PC's and a portrait tablet's size: no script or CSP errors, no
sideways scrolling, and a screenshot in test-artifacts/ for people to look at."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from browser_live import ARTIFACTS, log_in
from device.events import Event
from device.policy import Reservation
from device.schedule import Period
from device.store import Store

PAGES = ["/", "/hours", "/announcements", "/events", "/stats", "/doors", "/cards", "/users", "/users/audit", "/account", "/board"]
SIZES = {"desktop": (1280, 800), "tablet": (800, 1280)}


def _seed(branch) -> None:
    """A week of a real branch: hours, a holiday, visits and denials, a booth booking.

    Written on a connection of its own (LiveBranch.store)."""
    with branch.store() as store:
        _write_week(store)


def _write_week(store: Store) -> None:
    weekday = (Period(7 * 60, 12 * 60, "self_service"), Period(12 * 60, 18 * 60, "staffed"), Period(18 * 60, 21 * 60, "self_service"))
    store.set_weekly({d: weekday for d in range(5)} | {5: (Period(10 * 60, 16 * 60, "self_service"),)})
    now = datetime.now(timezone.utc)
    store.set_exceptions({(now + timedelta(days=5)).date(): ()}, note="Itsenäisyyspäivä")
    events = []
    for hours_ago in range(1, 24 * 7, 3):
        ts = now - timedelta(hours=hours_ago)
        events.append(Event(ts=ts, door="entrance", type="tap", reason="granted", mode="self_service" if hours_ago % 2 else "staffed",
                            card_key=f"{hours_ago:064x}"))
        if hours_ago % 7 == 0:
            events.append(Event(ts=ts, door="entrance", type="tap", reason="blocked", mode="self_service", card_key="ab" * 32))
    store.record(events)
    store.put_reservations([Reservation("r-1", "smartblock-1", "cd" * 32, now - timedelta(minutes=20), now + timedelta(hours=1))])


@pytest.mark.parametrize("size", SIZES)
def test_every_page_renders_cleanly_at(page, live_branch, size):
    _seed(live_branch)
    width, height = SIZES[size]
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, live_branch, "admin")
    ARTIFACTS.mkdir(exist_ok=True)
    for path in PAGES:
        response = page.goto(live_branch.url + path)
        assert response.status == 200, path
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow} px at {width}×{height}"
        name = "today" if path == "/" else path.strip("/")
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}x{height}.png"), full_page=True)
    assert page.console_errors == []
