"""The door extras as staff see them on a phone: a door whose PIN keypad is missing."""

from __future__ import annotations

import pytest

from browser_live import LiveBranch, log_in

#: The booth (the config's last door) gets a serial keypad whose port does not exist.
MISSING_KEYPAD = """
[doors.keypad]
type = "serial"
device = "/dev/ttyUSB-OMAOVI-NO-SUCH-KEYPAD"

[pin]
pepper_file = "pepper.key"
"""


@pytest.fixture
def live_branch(tmp_path):
    (tmp_path / "pepper.key").write_bytes(b"p" * 32)
    branch = LiveBranch(tmp_path, MISSING_KEYPAD)
    yield branch
    branch.close()


@pytest.mark.parametrize("width", [360, 768])
def test_a_missing_keypad_shows_its_door_as_card_only_without_sideways_scroll(page, live_branch, width):
    page.set_viewport_size({"width": width, "height": 800})
    log_in(page, live_branch, "staff")
    for path in ("/", "/doors"):
        page.goto(live_branch.url + path)
        badge = page.locator(".state-card-only").first
        badge.wait_for()
        assert badge.inner_text() == "Vain kortilla: näppäimistö ei toimi"
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow} px at {width} px"
    page.goto(live_branch.url + "/")
    assert "PIN-näppäimistö (Work booth) ei ole toiminut" in page.locator(".today-warnings").inner_text()
    assert page.console_errors == []
