"""What staff do on the page every week, in a real browser: hours, a holiday, a door, the figures."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

from browser_live import log_in
from device.events import Event


def test_edit_a_weekly_period_and_see_the_preview_change(page, live_branch):
    log_in(page, live_branch, "staff")
    page.goto(live_branch.url + "/hours")
    preview = page.locator(".timeline")
    assert "9.00–17.00" not in preview.inner_text()
    page.goto(live_branch.url + "/hours/weekly")
    for day in range(7):
        page.fill(f"input[name=day{day}-0-start]", "9.00")
        page.fill(f"input[name=day{day}-0-end]", "17")
        page.select_option(f"select[name=day{day}-0-mode]", "self_service")
    with page.expect_navigation():
        page.click("main form.stack button[type=submit].button-primary")
    assert page.url.endswith("/hours")
    assert preview.inner_text().count("9.00–17.00") == 14, "every day of the 14-day preview"
    assert page.locator(".timeline rect.bar-self_service").count() >= 14
    # A mistake is refused with the day named, and nothing changes.
    page.goto(live_branch.url + "/hours/weekly")
    page.fill("input[name=day0-0-end]", "8.00")
    with page.expect_navigation():
        page.click("main form.stack button[type=submit].button-primary")
    assert "Maanantai" in page.locator(".flash-error").inner_text()
    page.goto(live_branch.url + "/hours")
    assert preview.inner_text().count("9.00–17.00") == 14
    assert page.console_errors == []


def test_add_a_holiday_exception(page, live_branch):
    log_in(page, live_branch, "staff")
    holiday = datetime.now(live_branch.config.tz).date() + timedelta(days=3)
    page.goto(live_branch.url + "/hours/exceptions/new")
    page.fill("input[name=date]", f"{holiday.day}.{holiday.month}.{holiday.year}")
    page.fill("input[name=note]", "Joulupäivä")
    page.check("input[name=kind][value=closed]")
    with page.expect_navigation():
        page.click("main form button[type=submit].button-primary")
    day = page.locator(".timeline-day", has_text="Joulupäivä")
    assert day.count() == 1
    assert f"{holiday.day}.{holiday.month}." in day.inner_text()
    assert "Suljettu koko päivän" in day.inner_text()
    with live_branch.store() as store:
        assert store.schedule(live_branch.config.tz).periods_on(holiday) == ()
    assert page.console_errors == []


def test_pulse_unlock_shows_the_door_unlocked_and_locked_again(page, live_branch):
    log_in(page, live_branch, "staff")
    page.goto(live_branch.url + "/doors")
    entrance = page.locator(".door-card", has_text="Main entrance")
    entrance.locator(".badge.state-locked").wait_for()
    entrance.locator("a[href$='/doors/entrance/pulse']").click()
    assert "Main entrance" in page.locator("main").inner_text()
    assert not live_branch.lock_pin_active("entrance"), "the confirmation page itself does nothing"
    with page.expect_navigation():
        page.click("main form[method=post] button[type=submit]")
    # The page refreshes the door's state on its own: unlocked while the relay pulls, then locked.
    entrance = page.locator(".door-card", has_text="Main entrance")
    entrance.locator(".badge.state-unlocked").wait_for(timeout=8_000)
    assert live_branch.lock_pin_active("entrance")
    entrance.locator(".badge.state-locked").wait_for(timeout=12_000)
    assert not live_branch.lock_pin_active("entrance")
    assert page.console_errors == []


def test_download_the_statistics_csv(page, live_branch):
    now = datetime.now(live_branch.config.tz)
    with live_branch.store() as store:
        store.record([
            Event(ts=now - timedelta(minutes=m), door="entrance", type="tap", reason="granted", mode="self_service", card_key=f"{m:064x}")
            for m in range(1, 4)
        ])
    log_in(page, live_branch, "staff")
    page.goto(live_branch.url + "/stats")
    with page.expect_download() as info:
        page.click("a[download]:not([href*=dialect])")
    download = info.value
    assert download.suggested_filename.startswith("omaovi-kallio-") and download.suggested_filename.endswith(".csv")
    text = open(download.path(), encoding="utf-8-sig").read()
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    today = [row for row in rows if now.strftime("%-d.%-m.%Y") in row[0] or now.date().isoformat() in row[0]]
    assert len(today) == 1 and "3" in today[0][1:3], rows[0]
    assert page.console_errors == []


def test_import_patrons_and_follow_an_import_on_a_phone(page, live_branch, tmp_path):
    """At 360 px: the upload, the page's word on the last import, and a running import followed live."""
    page.set_viewport_size({"width": 360, "height": 740})
    log_in(page, live_branch, "admin")
    csv_file = tmp_path / "asiakkaat.csv"
    csv_file.write_text("card_number,self_service,age_ok_from\n" + "".join(f"{10_000_000 + n},1,2000-01-01\n" for n in range(1500)))
    page.goto(live_branch.url + "/cards")
    page.set_input_files("input[name=csv_file]", str(csv_file))
    with page.expect_navigation():
        page.click("#import button[type=submit]")
    region = page.locator("#import .live-region")
    assert "Viimeisin tuonti: 1\u00a0500 asiakasta" in region.inner_text()
    # An import from the console (a timer job) shows up while it runs, without reloading the page.
    with live_branch.store() as store:
        assert store.patron_count() == 1500
        store.set_status("patron_import", {"state": "running", "by": "console:root", "bytes": 16 * 2**20,
                                           "total": 32 * 2**20, "rows": 400_000})
    region.locator("progress").wait_for()
    assert "50 % / 32.0 Mt luettu, 400\u00a0000 riviä." in region.inner_text()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"/cards scrolls sideways by {overflow} px at 360 px"  # the file input was 28 px too wide
    assert page.console_errors == []
