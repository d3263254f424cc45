"""Logging in and switching the language, in a real browser."""

from __future__ import annotations

from browser_live import log_in


def test_log_in_and_out(page, live_branch):
    page.goto(live_branch.url + "/account")
    assert "/login" in page.url
    assert page.locator("h1").inner_text() == "Henkilökunnan kirjautuminen"
    page.fill("input[name=username]", "staff")
    page.fill("input[name=password]", "not-the-password")
    with page.expect_navigation():
        page.click("button[type=submit].button-primary")
    assert "Väärä käyttäjätunnus tai salasana." in page.locator(".flash-error").inner_text()
    log_in(page, live_branch, "staff")
    page.goto(live_branch.url + "/account")
    assert "staff" in page.locator("main").inner_text()
    with page.expect_navigation():
        page.click("text=Kirjaudu ulos")
    assert page.url.endswith("/login")
    page.goto(live_branch.url + "/account")
    assert "/login" in page.url
    assert page.console_errors == []


def test_switch_the_language_to_swedish(page, live_branch):
    log_in(page, live_branch, "staff")
    page.goto(live_branch.url + "/account")
    assert page.locator("h1").inner_text() == "Oma tili"
    with page.expect_navigation():
        page.click(".langswitch button[value=sv]")
    assert page.locator("h1").inner_text() == "Mitt konto"
    assert page.locator("html").get_attribute("lang") == "sv"
    # The choice is the user's: it holds on the next page too.
    page.goto(live_branch.url + "/account")
    assert "Logga ut" in page.locator(".topbar").inner_text()
    assert page.console_errors == []
