"""What a flood of logins or big bodies costs the staff page (issue 14, item 2).

A password check (scrypt) takes 32 MiB, and waitress keeps a request body in
memory before the page sees it: both were ways for anyone on the library's LAN
to push the service past its memory limit. Here: password checks take turns and
answer "busy" in the user's language; a body is held to its sender's limit,
decided from the headers before waitress keeps any of it. tests/reliability/
test_memory_limit.py runs the same attacks against ``omaovi web`` in a real
256 MB memory cgroup.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from admin_web import accounts, bodies
from admin_web.serve import make_server
from device import config as config_mod
from webclient import PASSWORDS

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# -- password checks take turns -------------------------------------------------------
def test_password_checks_run_one_at_a_time_also_for_unknown_users(web_store, monkeypatch):
    running, most = [0], [0]
    lock = threading.Lock()
    real_check = accounts.check_password_hash

    def spy(password_hash, password):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        try:
            return real_check(password_hash, password)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(accounts, "check_password_hash", spy)
    monkeypatch.setattr(accounts, "HASH_WAIT_SECONDS", 120)  # two shared cores: every check gets its turn
    names = [f"nosuchuser{n}" for n in range(10)] + ["staff", "admin"]
    with ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(lambda name: accounts.authenticate(web_store, name, "wrong-password-1"), names))
    assert results == [None] * len(names)
    assert most[0] == accounts.HASHES_AT_ONCE == 1


def test_an_unknown_user_is_checked_against_the_one_dummy_hash_made_at_start(web_store, monkeypatch):
    """Same hash parameters as a real password, so the same time; and made once, not per login."""
    checked, made = [], []
    monkeypatch.setattr(accounts, "check_password_hash", lambda h, p: checked.append(h) or False)
    monkeypatch.setattr(accounts, "generate_password_hash", lambda p: made.append(p) or "x")
    for _ in range(3):
        assert accounts.authenticate(web_store, "nosuchuser", "whatever-1234") is None
    assert checked == [accounts._DUMMY_HASH] * 3 and made == []
    real = web_store.conn.execute("SELECT password_hash FROM users WHERE username = 'staff'").fetchone()[0]
    assert accounts._DUMMY_HASH.split("$")[0] == real.split("$")[0]  # e.g. scrypt:32768:8:1


def test_a_login_that_waits_too_long_for_its_turn_is_answered_busy_in_the_users_language(anonymous, web_store, monkeypatch):
    monkeypatch.setattr(accounts, "HASH_WAIT_SECONDS", 0.05)
    anonymous.post("/language", data={"language": "fi"})
    assert accounts._hashing.acquire(timeout=5)  # another login is being checked
    try:
        response = anonymous.post("/login", data={"username": "staff", "password": PASSWORDS["staff"]})
    finally:
        accounts._hashing.release()
    assert response.status_code == 429 and response.headers["Retry-After"] == "5"
    assert "Henkilökunnan sivu tarkistaa juuri nyt monta salasanaa" in response.get_data(as_text=True)
    # Its turn came later, and then the same login works.
    assert anonymous.post("/login", data={"username": "staff", "password": PASSWORDS["staff"]}).status_code == 302


# -- request bodies held to their sender's limit ---------------------------------------
@pytest.fixture
def branch_config(tmp_path):
    """Served over plain HTTP on 127.0.0.1 below, so the session cookie may not be Secure-only."""
    from webclient import BRANCH_CONFIG

    (tmp_path / "consortium.key").write_text("k" * 32 + "\n")
    path = tmp_path / "omaovi.toml"
    path.write_text(BRANCH_CONFIG.replace("[web]\n", "[web]\nsecure_cookies = false\n", 1))
    return config_mod.load(path)


@pytest.fixture
def served(web_app, web_store):
    """The app behind the real waitress server, in this process, on a free port."""
    server = make_server(web_app.extensions["omaovi"].config, host="127.0.0.1", port=0, app=web_app)

    def run():
        with contextlib.suppress(OSError):  # closing the socket ends run() with EBADF, as in serve()
            server.run()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(10)


def _browser(url: str, language: str = "en", user: str | None = None) -> requests.Session:
    browser = requests.Session()
    browser.headers["Accept-Language"] = language
    if user:
        token = _CSRF.search(browser.get(f"{url}/login").text).group(1)
        answer = browser.post(f"{url}/login", data={"csrf_token": token, "username": user, "password": PASSWORDS[user]},
                              allow_redirects=False)
        assert answer.status_code == 302
    return browser


def _token(browser: requests.Session, url: str) -> str:
    return _CSRF.search(browser.get(f"{url}/login").text).group(1)


def test_an_anonymous_body_over_a_few_kb_is_refused_in_the_users_language(served):
    browser = _browser(served, "fi")
    form = {"csrf_token": _token(browser, served), "username": "staff", "password": "x" * 20_000}
    answer = browser.post(f"{served}/login", data=form)
    assert answer.status_code == 413
    assert "Pyyntö on liian suuri: enintään 8 kt" in answer.text
    # A login form of the usual size goes through.
    form["password"] = PASSWORDS["staff"]
    assert browser.post(f"{served}/login", data=form, allow_redirects=False).status_code == 302


def test_a_chunked_anonymous_body_is_held_to_the_same_limit(served):
    browser = _browser(served)
    token = _token(browser, served)
    body = f"csrf_token={token}&username=staff&password=".encode() + b"x" * 50_000
    chunks = (body[start:start + 4096] for start in range(0, len(body), 4096))
    answer = browser.post(f"{served}/login", data=chunks, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 413 and "at most 8 kB" in answer.text


def test_a_client_cannot_send_the_servers_own_refusal_header(served):
    browser = _browser(served)
    form = {"csrf_token": _token(browser, served), "username": "staff", "password": PASSWORDS["staff"]}
    answer = browser.post(f"{served}/login", data=form, headers={"Omaovi-Body-Refused": "1"}, allow_redirects=False)
    assert answer.status_code == 302


def test_only_an_admin_may_send_a_big_body(served, web_store):
    csv = b"card_number,self_service,age_ok_from\n" + b"".join(b"%08d,1,2000-01-01\n" % n for n in range(60_000))
    assert 1024 * 1024 < len(csv) < bodies.ADMIN_BODY
    staff = _browser(served, user="staff")
    token = _CSRF.search(staff.get(f"{served}/account").text).group(1)
    answer = staff.post(f"{served}/hours/import", data={"csrf_token": token}, files={"file": ("hours.json", csv)})
    assert answer.status_code == 413 and "at most 1024 kB" in answer.text
    admin = _browser(served, user="admin")
    token = _CSRF.search(admin.get(f"{served}/account").text).group(1)
    answer = admin.post(f"{served}/cards/import", data={"csrf_token": token, "replace": "1"},
                        files={"csv_file": ("patrons.csv", csv)}, allow_redirects=False)
    assert answer.status_code == 302
    assert web_store.patron_count() == 60_000


def test_a_big_body_from_a_visitor_whose_session_ended_goes_to_the_login_page(served):
    browser = requests.Session()
    browser.cookies.set("omaovi_session", "forged.or.expired")
    answer = browser.post(f"{served}/cards/import", files={"csv_file": ("p.csv", b"x" * 100_000)}, allow_redirects=False)
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]


def test_a_refused_body_is_not_kept(served):
    """A body over the limit is read and dropped as it comes: the server never holds it."""
    from admin_web import serve

    kept = []
    real = serve._RefusedBody.append

    def spy(self, data):
        real(self, data)
        kept.append(0 if self.refused else len(self.buffer))

    serve._RefusedBody.append = spy
    try:
        with socket.create_connection(("127.0.0.1", int(served.rsplit(":", 1)[1]))) as raw:
            raw.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
            for _ in range(50):
                raw.sendall(b"x" * 100_000)
            answer = raw.recv(200)
    finally:
        serve._RefusedBody.append = real
    assert answer.startswith(b"HTTP/1.1 413")
    assert kept and max(kept) == 0
