"""Logging in to the staff page: first run, passwords, sessions, throttling, CSRF, headers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from admin_web import accounts, audit
from device.events import utc_text
from webclient import PASSWORDS, WebClient, make_app


def _sid(client) -> str | None:
    with client.session_transaction() as session:
        return session.get("sid")


def test_with_no_user_the_page_explains_the_console_command_and_shows_no_password(branch_config):
    app = make_app(branch_config, with_users=False)
    client = app.test_client()
    first = client.get("/account")
    assert first.status_code == 302 and first.headers["Location"].endswith("/first-run")
    page = client.get("/first-run", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "omaovi user add" in page and "--role admin" in page
    assert "there is no default password" in page
    # The login page sends the visitor back to the first-run page: there is nobody to log in as.
    assert client.get("/login").headers["Location"].endswith("/first-run")


def test_login_with_the_right_password_opens_the_page_and_is_audited(anonymous, web_store):
    response = anonymous.login("staff")
    assert response.status_code == 302
    assert anonymous.get("/account").status_code == 200
    assert audit.entries(web_store)[0]["action"] == "login"
    assert audit.entries(web_store)[0]["actor"] == "staff"


@pytest.mark.parametrize("username, password", [("staff", "wrong-password"), ("nobody", "whatever-1234"), ("staff", "")])
def test_a_wrong_login_is_refused_with_one_message_for_both_mistakes(anonymous, web_store, username, password):
    response = anonymous.post("/login", data={"username": username, "password": password}, headers={"Accept-Language": "en"})
    assert response.status_code == 401
    assert "Wrong username or password." in response.get_data(as_text=True)
    assert _sid(anonymous) is None
    assert audit.entries(web_store)[0]["action"] == "login.failed"


def test_passwords_are_stored_hashed(web_store):
    rows = web_store.conn.execute("SELECT password_hash FROM users").fetchall()
    for (stored,) in rows:
        assert stored.startswith(("scrypt:", "pbkdf2:"))
        assert all(password not in stored for password in PASSWORDS.values())


def test_after_five_failures_an_address_is_throttled_even_with_the_right_password(anonymous):
    for _ in range(accounts.MAX_FAILURES):
        assert anonymous.post("/login", data={"username": "nobody", "password": "nope-nope-nope"}).status_code == 401
    throttled = anonymous.post("/login", data=dict(username="staff", password=PASSWORDS["staff"]), headers={"Accept-Language": "en"})
    assert throttled.status_code == 429
    assert "Too many failed logins" in throttled.get_data(as_text=True)
    assert _sid(anonymous) is None
    # Another address is not affected (failures for one username are counted too: tests/security/test_login_throttle.py).
    other = anonymous.application.test_client()
    assert other.post("/login", data={"username": "staff", "password": PASSWORDS["staff"]},
                      environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 302


def test_the_throttle_lifts_once_the_failures_age_out(anonymous, web_store):
    old = utc_text(accounts._now() - accounts.FAILURE_WINDOW - timedelta(seconds=1))
    with web_store.conn:
        web_store.conn.executemany("INSERT INTO login_failures (address, ts) VALUES ('127.0.0.1', ?)", [(old,)] * 10)
    assert anonymous.login("staff").status_code == 302


def test_login_gives_a_new_session_id_so_a_planted_one_is_useless(web_app, web_store):
    client = web_app.test_client()
    with client.session_transaction() as session:
        session["sid"] = "planted-by-an-attacker"
    client.login("staff")
    assert _sid(client) not in (None, "planted-by-an-attacker")
    # The same person logging in again gets yet another id.
    first = _sid(client)
    client.login("staff")
    assert _sid(client) != first


def test_logout_ends_the_session_on_the_server(staff, web_app):
    sid = _sid(staff)
    assert staff.post("/logout", data={}).status_code == 302
    # Replaying the old cookie gets nowhere: the server forgot the session.
    replay = web_app.test_client()
    with replay.session_transaction() as session:
        session["sid"] = sid
    assert replay.get("/account").status_code == 302


def test_an_idle_session_expires(staff, web_store, branch_config):
    idle = timedelta(minutes=branch_config.web.session_idle_minutes, seconds=1)
    with web_store.conn:
        web_store.conn.execute("UPDATE web_sessions SET last_seen = ?", (utc_text(accounts._now() - idle),))
    response = staff.get("/account")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_session_ends_after_the_maximum_age_however_busy(staff, web_store, branch_config):
    too_old = timedelta(hours=branch_config.web.session_max_hours, seconds=1)
    with web_store.conn:
        web_store.conn.execute("UPDATE web_sessions SET created_at = ?", (utc_text(accounts._now() - too_old),))
    assert staff.get("/account").status_code == 302


def test_disabling_a_user_ends_their_session_at_once(staff, web_store):
    accounts.set_disabled(web_store, "staff", True)
    assert staff.get("/account").status_code == 302
    assert staff.login("staff").status_code == 401


def test_the_login_page_does_not_redirect_to_another_site(anonymous):
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        response = anonymous.post(f"/login?next={target}", data={"username": "staff", "password": PASSWORDS["staff"]})
        assert response.headers["Location"] in ("/",), target
        anonymous.post("/logout", data={})


@pytest.mark.parametrize("target", ["/%0d%0aX:1", "/%0aSet-Cookie:%20omaovi_session=planted", "/today%09x", "/%00"])
def test_a_next_with_a_line_break_or_control_character_goes_to_the_start_page(anonymous, target):
    response = anonymous.post(f"/login?next={target}", data={"username": "staff", "password": PASSWORDS["staff"]})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert "X" not in response.headers and "planted" not in str(response.headers)
    assert anonymous.get("/account").status_code == 200, "the login itself succeeded"


def test_after_login_the_page_asked_for_is_shown(anonymous):
    response = anonymous.get("/account")
    assert "next=/account" in response.headers["Location"]
    assert anonymous.post("/login?next=/account", data={"username": "staff", "password": PASSWORDS["staff"]}).headers["Location"] == "/account"


def test_a_form_post_without_the_csrf_token_is_refused(staff, web_store):
    before = web_store.conn.execute("SELECT password_hash FROM users WHERE username = 'staff'").fetchone()
    response = staff.post("/account", data={
        "csrf_token": "", "current_password": PASSWORDS["staff"], "new_password": "x" * 12, "new_password_again": "x" * 12,
    })
    assert response.status_code == 400
    assert web_store.conn.execute("SELECT password_hash FROM users WHERE username = 'staff'").fetchone() == before


@pytest.mark.parametrize("language, heading, explained, back_text", [
    ("fi", "Lomaketta ei lähetetty", "Lomake oli auki liian kauan", "Takaisin"),
    ("sv", "Formuläret skickades inte", "Formuläret var öppet för länge", "Tillbaka"),
    ("en", "The form was not sent", "The form was open too long", "Back"),
])
def test_a_refused_form_is_explained_in_the_users_language_with_a_way_back(staff, language, heading, explained, back_text):
    response = staff.post("/hours/weekly", data={"csrf_token": "stale"}, headers={
        "Accept-Language": language, "Referer": "http://localhost/hours/weekly?x=1"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'<html lang="{language}">' in page
    assert heading in page and explained in page and "Bad Request" not in page
    assert f'<a class="button button-primary" href="/hours/weekly?x=1">{back_text}</a>' in page


def test_the_way_back_from_a_refused_form_stays_on_this_site(anonymous):
    """A Referer from elsewhere is not followed: the link goes to the login page instead."""
    response = anonymous.post("/login", data={"csrf_token": "", "username": "staff", "password": "x"},
                              headers={"Referer": "https://evil.example/login"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "evil.example" not in page and 'href="/login"' in page


def test_a_token_from_another_session_is_refused(web_app, staff):
    other = web_app.test_client()
    other.login("admin")
    stolen = other.csrf_token()
    response = staff.post("/logout", data={"csrf_token": stolen})
    assert response.status_code == 400


def test_changing_the_own_password(staff, web_store):
    response = staff.post("/account", data={
        "current_password": PASSWORDS["staff"], "new_password": "a-new-password-2", "new_password_again": "a-new-password-2",
    })
    assert response.status_code == 302
    assert staff.get("/account").status_code == 200  # still logged in on this browser
    assert accounts.authenticate(web_store, "staff", "a-new-password-2") is not None
    assert audit.entries(web_store)[0]["action"] == "account.password"


@pytest.mark.parametrize("current, new, again, message", [
    ("wrong-password-0", "a-new-password-2", "a-new-password-2", "The current password is wrong."),
    (PASSWORDS["staff"], "a-new-password-2", "a-new-password-3", "The new passwords do not match."),
    (PASSWORDS["staff"], "short", "short", "at least 10 characters"),
])
def test_a_bad_password_change_says_what_is_wrong(staff, current, new, again, message):
    response = staff.post("/account", data={"current_password": current, "new_password": new, "new_password_again": again},
                          headers={"Accept-Language": "en"})
    assert response.status_code == 400 and message in response.get_data(as_text=True)


def test_security_headers_and_cookie_flags(anonymous):
    response = anonymous.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    login = anonymous.login("staff")
    cookie = login.headers["Set-Cookie"]
    # Browsers reach the page through the HTTPS proxy by default, so the cookie never travels in clear.
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie


@pytest.mark.parametrize("web, secure", [
    ('host = "0.0.0.0"\nplain_http_on_network = true\n', False),  # otherwise no browser could log in
    ('host = "0.0.0.0"\nplain_http_on_network = true\nsecure_cookies = true\n', True),  # a proxy of one's own
    ('secure_cookies = false\n', False),
])
def test_secure_cookies_follow_plain_http_unless_set(tmp_path, web, secure):
    from webclient import write_branch

    config = write_branch(tmp_path, "")
    text = config.path.read_text().replace('[web]\n', '[web]\n' + web)
    config.path.write_text(text)
    from device import config as config_mod

    app = make_app(config_mod.load(config.path))
    app.test_client_class = WebClient
    client = app.test_client()
    assert ("Secure" in client.login("staff").headers["Set-Cookie"]) is secure


def test_the_secret_key_is_made_once_and_kept_private(web_app, branch_config):
    path = branch_config.web.secret_key_file
    assert path.exists() and path.stat().st_mode & 0o077 == 0
    before = path.read_bytes()
    make_app(branch_config, with_users=False)
    assert path.read_bytes() == before


@pytest.mark.parametrize("language, text", [("fi", "Kirjaudu sisään"), ("sv", "Logga in"), ("en", "Log in")])
def test_the_login_page_follows_the_browser_language(anonymous, language, text):
    page = anonymous.get("/login", headers={"Accept-Language": f"{language},en;q=0.5"}).get_data(as_text=True)
    assert f'<html lang="{language}">' in page and text in page


def test_finnish_is_the_default_language(anonymous):
    assert "Kirjaudu sisään" in anonymous.get("/login", headers={"Accept-Language": "de"}).get_data(as_text=True)


def test_a_chosen_language_is_kept_for_the_user_over_the_browser(staff, web_app, web_store):
    assert staff.post("/language", data={"language": "sv", "next": "/account"}).headers["Location"] == "/account"
    assert accounts.get_user(web_store, "staff").language == "sv"
    # A new browser with English preferences still gets Swedish after logging in.
    other = web_app.test_client()
    other.login("staff")
    assert "Mitt konto" in other.get("/account", headers={"Accept-Language": "en"}).get_data(as_text=True)


def test_an_unknown_language_is_refused(anonymous):
    assert anonymous.post("/language", data={"language": "de"}).status_code == 400
