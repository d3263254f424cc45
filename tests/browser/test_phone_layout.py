"""Every staff page and the public board on a phone (360 px) and a portrait tablet (768 px):
nothing scrolls sideways, nothing sticks out of the window, and every area of the menu
can be reached. Screenshots go to test-artifacts/ for people to look at."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from browser_live import ARTIFACTS, log_in
from test_screenshots import _seed

SIZES = {"phone": (360, 740), "tablet": (768, 1024)}


def _pages(branch) -> list[str]:
    holiday = (datetime.now(branch.config.tz) + timedelta(days=5)).date()
    return [
        "/", "/hours", "/hours/weekly", "/hours/exceptions/new", f"/hours/exceptions/{holiday.isoformat()}", "/announcements",
        "/events", "/stats", "/doors", "/doors/entrance/pulse", "/doors/entrance/hold", "/cards", "/users",
        "/users/staff/manage", "/users/audit", "/account", "/board",
    ]


#: Elements whose box reaches past the right edge of the window or starts left of it, and
#: boxes whose own content scrolls sideways (a wide table in its .table-wrap would hide its
#: last columns on a phone just as the old menu strip hid its last areas).
_STICKING_OUT = """() => {
  const width = document.documentElement.clientWidth;
  const found = [];
  const name = element => `${element.tagName.toLowerCase()}${element.className && typeof element.className === 'string'
                            ? '.' + element.className.trim().replace(/ +/g, '.') : ''}`;
  for (const element of document.body.querySelectorAll('*')) {
    const box = element.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    if (box.right > width + 0.5 || box.left < -0.5) found.push(`${name(element)} ${Math.round(box.left)}..${Math.round(box.right)}`);
    const overflow = getComputedStyle(element).overflowX;
    if ((overflow === 'auto' || overflow === 'scroll') && element.scrollWidth > element.clientWidth + 1) {
      found.push(`${name(element)} scrolls ${element.scrollWidth} px in ${element.clientWidth}`);
    }
  }
  return found;
}"""


def check_fits(page, path: str, width: int) -> None:
    scroll = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    sticking_out = page.evaluate(_STICKING_OUT)
    assert scroll[0] <= scroll[1], f"{path} scrolls sideways at {width} px: {scroll[0]} px of content in {scroll[1]}; {sticking_out[:8]}"
    assert sticking_out == [], f"{path} at {width} px has elements wider than the window: {sticking_out[:8]}"


@pytest.mark.parametrize("size", SIZES)
def test_every_page_fits_the_width_of(page, live_branch, size):
    _seed(live_branch)
    width, height = SIZES[size]
    page.set_viewport_size({"width": width, "height": height})
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(live_branch.url + "/login")
    check_fits(page, "/login", width)
    log_in(page, live_branch, "admin")
    for path in _pages(live_branch):
        response = page.goto(live_branch.url + path)
        assert response.status == 200, path
        page.wait_for_load_state("networkidle")
        check_fits(page, path, width)
        name = "today" if path == "/" else path.strip("/").replace("/", "-")
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}px.png"), full_page=True)
    assert page.console_errors == []


@pytest.mark.parametrize("size", SIZES)
def test_every_area_of_the_menu_can_be_reached_at(page, live_branch, size):
    """Each menu item is on screen and opens its page: no item hidden off the edge of a strip."""
    width, height = SIZES[size]
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, live_branch, "admin")
    links = page.locator("nav.mainnav a")
    targets = [links.nth(index).get_attribute("href") for index in range(links.count())]
    assert len(targets) == 8, targets
    for target in targets:
        page.goto(live_branch.url + "/")
        link = page.locator(f"nav.mainnav a[href='{target}']")
        box = link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, f"{target} is off screen at {width} px: {box}"
        with page.expect_navigation():
            link.click()
        assert page.url.endswith(target), (target, page.url)
    assert page.console_errors == []


_AXIS_LABELS = """selector => {
  const svg = document.querySelector(selector);
  const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  return [...svg.querySelectorAll('text')].filter(text => getComputedStyle(text).display !== 'none').map(text => {
    const box = text.getBoundingClientRect();
    return {text: text.textContent, axis: text.classList.contains('tick-x') ? 'x' : 'y',
            px: scale * parseFloat(getComputedStyle(text).fontSize), left: box.left, right: box.right,
            inside: box.left >= svg.getBoundingClientRect().left - 0.5 && box.right <= svg.getBoundingClientRect().right + 0.5};
  });
}"""


@pytest.mark.parametrize("size", SIZES)
def test_the_visits_chart_labels_can_be_read_at(page, live_branch, size):
    """At least 10 px tall as drawn, inside the chart, and no two period labels on top of each other."""
    _seed(live_branch)
    width, height = SIZES[size]
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, live_branch, "staff")
    today = datetime.now(live_branch.config.tz).date()
    # 31 days: every third day is labelled, the last one under the last bar at the right edge.
    page.goto(f"{live_branch.url}/stats?from={(today - timedelta(days=30)).isoformat()}&to={today.isoformat()}&by=day")
    labels = page.evaluate(_AXIS_LABELS, "svg.chart-visits")
    x_labels = sorted((label for label in labels if label["axis"] == "x"), key=lambda label: label["left"])
    assert len(x_labels) >= 5 and len(labels) - len(x_labels) == 5, labels
    for label in labels:
        assert label["px"] >= 10, f"{label['text']} is drawn {label['px']:.1f} px tall at {width} px"
        assert label["inside"], f"{label['text']} is cut off at {width} px"
    for before, after in zip(x_labels, x_labels[1:]):
        assert before["right"] <= after["left"], f"{before['text']} and {after['text']} overlap at {width} px"
    # The busiest-hours heatmap beside it: weekdays and hours.
    for label in page.evaluate(_AXIS_LABELS, "svg.heatmap"):
        assert label["px"] >= 10 and label["inside"], f"heatmap {label} at {width} px"


@pytest.mark.parametrize("size", SIZES)
def test_the_hours_under_todays_timeline_can_be_read_at(page, live_branch, size):
    _seed(live_branch)
    width, height = SIZES[size]
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, live_branch, "staff")
    page.goto(live_branch.url + "/")
    labels = page.evaluate(_AXIS_LABELS, "svg.today-timeline")
    assert [label["text"] for label in labels] == ["6", "12", "18"]
    for label in labels:
        assert label["px"] >= 10 and label["inside"], f"{label} at {width} px"
