"""The login throttle under attack (issue 14, item 3): who it counts, and when it lets go."""

from __future__ import annotations

import ipaddress
import re
import threading
from datetime import timedelta

import pytest

from admin_web import accounts
from admin_web.proxies import client_address
from device import config as config_mod
from device.events import utc_text
from webclient import BRANCH_CONFIG, PASSWORDS, WebClient, make_app

WRONG = "not-the-password"


def guess(client, username="admin", password=WRONG, **kw):
    return client.post("/login", data={"username": username, "password": password}, **kw)


def test_logging_in_as_oneself_does_not_reset_the_count_against_another_user(anonymous):
    """Four wrong guesses at the admin, then one's own login, again and again: 40 guesses."""
    refused = 0
    for _ in range(10):
        for _ in range(4):
            refused += guess(anonymous).status_code == 429
        anonymous.post("/logout") if anonymous.login("staff").status_code == 302 else None
    assert refused >= 40 - accounts.MAX_FAILURES


def test_guesses_at_one_user_from_many_addresses_are_throttled(web_app):
    for number in range(accounts.MAX_FAILURES):
        client = web_app.test_client()
        assert guess(client, environ_base={"REMOTE_ADDR": f"192.0.2.{number + 1}"}).status_code == 401
    elsewhere = web_app.test_client()
    right = guess(elsewhere, password=PASSWORDS["admin"], environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert right.status_code == 429
    # Other users are not held up by the attack on the admin.
    assert guess(elsewhere, "staff", PASSWORDS["staff"], environ_base={"REMOTE_ADDR": "198.51.100.9"}).status_code == 302


def test_a_users_own_success_clears_their_own_mistakes(anonymous):
    for _ in range(accounts.MAX_FAILURES - 1):
        assert guess(anonymous, "staff").status_code == 401
    assert anonymous.login("staff").status_code == 302
    anonymous.post("/logout")
    for _ in range(accounts.MAX_FAILURES - 1):
        assert guess(anonymous, "staff").status_code == 401
    assert anonymous.login("staff").status_code == 302


def test_parallel_guesses_get_at_most_the_limit_checked(web_app, monkeypatch):
    checked = []
    real = accounts.authenticate
    start = threading.Barrier(40)

    def counted(store, username, password):
        checked.append(username)
        return real(store, username, password)

    monkeypatch.setattr(accounts, "authenticate", counted)
    answers = []

    def one():
        client = web_app.test_client()
        token = client.csrf_token()
        start.wait()
        answers.append(client.post("/login", data={"username": "admin", "password": WRONG, "csrf_token": token}).status_code)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == 40
    assert len(checked) <= accounts.MAX_FAILURES
    assert sorted(set(answers)) == [401, 429]


def test_failures_stamped_in_the_future_lock_out_for_the_window_at_most(anonymous, web_store):
    """The clock was a day ahead when they were recorded, and NTP has stepped it back."""
    ahead = utc_text(accounts._now() + timedelta(days=1))
    with web_store.conn:
        web_store.conn.executemany(
            "INSERT INTO login_failures (address, ts) VALUES ('127.0.0.1', ?)", [(ahead,)] * 10
        )
    page = guess(anonymous, headers={"Accept-Language": "en"})
    assert page.status_code == 429
    minutes = int(re.search(r"Try again in (\d+) minutes", page.get_data(as_text=True)).group(1))
    assert minutes <= accounts.FAILURE_WINDOW.total_seconds() // 60


def proxied_app(tmp_path, trusted: str):
    (tmp_path / "consortium.key").write_text("k" * 32 + "\n")
    path = tmp_path / "omaovi.toml"
    path.write_text(BRANCH_CONFIG.replace("[web]\n", f"[web]\ntrusted_proxies = {trusted}\n"))
    app = make_app(config_mod.load(path))
    app.test_client_class = WebClient
    return app


def test_a_password_typed_as_the_username_is_not_kept(anonymous, web_store):
    guess(anonymous, PASSWORDS["admin"])
    dump = "\n".join(web_store.conn.iterdump())
    assert "login_failures" in dump and PASSWORDS["admin"] not in dump


def test_behind_a_trusted_proxy_each_client_is_counted_by_its_own_address(tmp_path):
    app = proxied_app(tmp_path, '["127.0.0.1"]')
    attacker = app.test_client()
    for _ in range(accounts.MAX_FAILURES + 2):
        guess(attacker, "nobody", headers={"X-Forwarded-For": "10.0.0.66"})
    colleague = app.test_client()
    assert guess(colleague, "staff", PASSWORDS["staff"], headers={"X-Forwarded-For": "10.0.0.7"}).status_code == 302


def test_x_forwarded_for_from_anyone_else_is_ignored(tmp_path):
    app = proxied_app(tmp_path, '["127.0.0.1"]')
    attacker = app.test_client()
    for number in range(accounts.MAX_FAILURES):
        env = {"REMOTE_ADDR": "10.0.0.66"}
        assert guess(attacker, "nobody", headers={"X-Forwarded-For": f"10.9.9.{number}"}, environ_base=env).status_code == 401
    blocked = guess(attacker, "staff", PASSWORDS["staff"], headers={"X-Forwarded-For": "10.9.9.99"},
                    environ_base={"REMOTE_ADDR": "10.0.0.66"})
    assert blocked.status_code == 429


def test_without_trusted_proxies_the_header_changes_nothing(anonymous):
    for number in range(accounts.MAX_FAILURES):
        guess(anonymous, "nobody", headers={"X-Forwarded-For": f"10.9.9.{number}"})
    assert guess(anonymous, "staff", PASSWORDS["staff"], headers={"X-Forwarded-For": "10.9.9.99"}).status_code == 429


def test_behind_a_trusted_proxy_metrics_without_a_token_follow_the_clients_address(tmp_path):
    """The proxy's own 127.0.0.1 is on the default allow-list; the LAN client behind it is not."""
    app = proxied_app(tmp_path, '["127.0.0.1"]')
    client = app.test_client()
    assert client.get("/metrics", headers={"X-Forwarded-For": "10.0.0.66"}).status_code == 401
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize("peer, forwarded_for, client", [
    ("127.0.0.1", "10.0.0.66", "10.0.0.66"),
    ("127.0.0.1", "", "127.0.0.1"),
    ("::ffff:127.0.0.1", "10.0.0.66", "10.0.0.66"),
    # Only as far back as the trusted proxies go: what the client wrote itself is not believed.
    ("127.0.0.1", "6.6.6.6, 10.0.0.66", "10.0.0.66"),
    ("127.0.0.1", "6.6.6.6, 10.20.0.9, 10.0.0.66", "10.0.0.66"),
    ("10.20.0.9", "6.6.6.6, 203.0.113.5", "203.0.113.5"),
    ("127.0.0.1", "10.0.0.66, 10.20.0.9", "10.0.0.66"),
    ("127.0.0.1", "garbage", "127.0.0.1"),
    ("192.0.2.1", "10.0.0.66", "192.0.2.1"),
])
def test_the_client_is_the_first_address_from_the_right_that_is_not_a_trusted_proxy(peer, forwarded_for, client):
    trusted = [ipaddress.ip_network("127.0.0.1"), ipaddress.ip_network("10.20.0.0/24")]
    assert client_address(peer, forwarded_for, trusted) == client
