"""The Users page and the audit log, for admins only.

A new or reset password is shown once, in the answer to the post that made it,
and stored nowhere but as a hash; disabling or resetting ends the user's sessions.
"""

from __future__ import annotations

import re
import sqlite3

import pytest

from admin_web import accounts, audit
from device.store import Store
from webclient import blueprint_routes

EN = {"Accept-Language": "en"}
_PASSWORD = re.compile(r'<output class="new-password"[^>]*>([^<]+)</output>')


def _password_in(response) -> str:
    return _PASSWORD.search(response.get_data(as_text=True)).group(1)


def test_every_users_route_refuses_staff(web_app, staff, web_store):
    routes = list(blueprint_routes(web_app, "users", "admin"))
    assert {url for _, url in routes} >= {"/users", "/users/audit", "/users/admin/manage", "/users/admin/disable"}
    for method, url in routes:
        response = staff.open(url, method=method, data={"csrf_token": staff.csrf_token(), "username": "x1", "role": "admin"})
        assert response.status_code == 403, (method, url)
    assert accounts.get_user(web_store, "admin").is_admin and not accounts.get_user(web_store, "admin").disabled
    assert accounts.get_user(web_store, "x1") is None


def test_the_list_shows_every_user_with_role_and_state(admin, web_store):
    accounts.set_disabled(web_store, "staff", True)
    page = admin.get("/users", headers=EN).get_data(as_text=True)
    for text in ("admin", "staff", "administrator", "Disabled", "Enabled", "From the browser", "Add a user"):
        assert text in page


def test_a_new_user_gets_a_password_shown_once_that_logs_in(admin, web_app, web_store):
    response = admin.post("/users", data={"username": "Maija", "role": "staff"}, headers=EN)
    assert response.status_code == 200
    password = _password_in(response)
    assert "User maija added" in response.get_data(as_text=True)
    assert password not in admin.get("/users").get_data(as_text=True)
    newcomer = web_app.test_client()
    assert newcomer.login("maija", password).status_code == 302
    assert newcomer.get("/account").status_code == 200
    entry = audit.entries(web_store, actor="admin")[0]
    assert (entry["action"], entry["target"], entry["detail"]) == ("users.add", "maija", {"role": "staff"})
    assert all(password not in str(value) for row in web_store.conn.execute("SELECT * FROM audit_log") for value in row)


@pytest.mark.parametrize("username, role, text", [
    ("<script>alert(1)</script>", "staff", "A username is 2-32 lowercase letters"),
    ("staff", "staff", "That username is already taken."),
    ("x", "staff", "A username is 2-32 lowercase letters"),
    ("maija", "superuser", "Unknown role."),
])
def test_a_bad_new_user_is_refused_and_the_form_kept(admin, web_store, username, role, text):
    response = admin.post("/users", data={"username": username, "role": role}, headers=EN)
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and text in page
    assert "<script>alert" not in page
    assert len(accounts.users(web_store)) == 2
    if "<" in username:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_disabling_a_user_sends_their_browser_to_the_login_page(admin, staff, web_store):
    assert staff.get("/account").status_code == 200
    assert admin.post("/users/staff/disable", data={}).status_code == 302
    response = staff.get("/account")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert staff.login("staff").status_code == 401
    assert audit.entries(web_store, actor="admin")[0]["action"] == "users.disable"
    assert "Disabled" in admin.get("/users/staff/manage", headers=EN).get_data(as_text=True)


def test_an_enabled_user_can_log_in_again(admin, web_app, web_store):
    accounts.set_disabled(web_store, "staff", True)
    assert admin.post("/users/staff/enable", data={}).status_code == 302
    assert web_app.test_client().login("staff").status_code == 302
    assert audit.entries(web_store, actor="admin")[0]["action"] == "users.enable"


def test_an_admin_cannot_disable_themselves(admin, web_store):
    response = admin.post("/users/admin/disable", data={}, headers=EN)
    assert response.status_code == 400
    assert "You cannot disable your own account." in response.get_data(as_text=True)
    assert not accounts.get_user(web_store, "admin").disabled


def test_the_last_admin_cannot_be_disabled_or_demoted(admin, web_store):
    """Through the page the acting admin is always another enabled admin, so the rule shows on the admin's own account."""
    response = admin.post("/users/admin/disable", data={}, headers=EN)
    assert response.status_code == 400 and not accounts.get_user(web_store, "admin").disabled
    for change, code in ((lambda: accounts.set_disabled(web_store, "admin", True), "last_admin"),
                         (lambda: accounts.set_role(web_store, "admin", "staff"), "last_admin_role")):
        with pytest.raises(accounts.AccountError) as refused:
            change()
        assert refused.value.code == code
    assert accounts.get_user(web_store, "admin").is_admin


def test_with_two_admins_one_may_disable_or_demote_the_other(admin, web_store):
    accounts.add_user(web_store, "boss", "boss-password-1", "admin")
    assert admin.post("/users/boss/role", data={"role": "staff"}).status_code == 302
    assert not accounts.get_user(web_store, "boss").is_admin
    accounts.set_role(web_store, "boss", "admin")
    assert admin.post("/users/boss/disable", data={}).status_code == 302
    assert accounts.get_user(web_store, "boss").disabled


@pytest.mark.parametrize("take_away", [
    lambda store, name: accounts.set_disabled(store, name, True),
    lambda store, name: accounts.set_role(store, name, "staff"),
], ids=["disable", "demote"])
def test_two_admins_taking_each_other_away_at_once_leave_one_admin(web_store, branch_config, monkeypatch, take_away):
    """Boss's request arrives while admin's is between its check and its write; one must lose.

    The interleaving is made, not waited for: boss's request runs inside admin's, on
    a second connection that gives up at once when it finds the write lock taken.
    """
    accounts.add_user(web_store, "boss", "boss-password-1", "admin")
    other = Store(branch_config.database, busy_timeout_ms=0, migrate=False)
    check, meanwhile = accounts._keep_an_admin, []

    def check_then_let_boss_in(store, user, refusal):
        check(store, user, refusal)
        if store is web_store:
            try:
                take_away(other, "admin")
                meanwhile.append("boss took admin away")
            except (accounts.AccountError, sqlite3.OperationalError) as exc:
                meanwhile.append(exc)

    monkeypatch.setattr(accounts, "_keep_an_admin", check_then_let_boss_in)
    take_away(web_store, "boss")
    assert meanwhile != ["boss took admin away"]
    # Boss's request, once admin's is done, is refused by the rule itself.
    with pytest.raises(accounts.AccountError):
        take_away(other, "admin")
    other.close()
    admins = [u.username for u in accounts.users(web_store) if u.is_admin and not u.disabled]
    assert admins == ["admin"]


def test_an_admin_cannot_change_their_own_role(admin, web_store):
    accounts.add_user(web_store, "boss", "boss-password-1", "admin")
    response = admin.post("/users/admin/role", data={"role": "staff"}, headers=EN)
    assert response.status_code == 400 and "You cannot change your own role." in response.get_data(as_text=True)
    assert accounts.get_user(web_store, "admin").is_admin


def test_a_reset_shows_a_new_password_once_and_ends_the_sessions(admin, staff, web_app, web_store):
    response = admin.post("/users/staff/reset", data={}, headers=EN)
    assert response.status_code == 200 and "New password for staff" in response.get_data(as_text=True)
    password = _password_in(response)
    assert staff.get("/account").status_code == 302
    fresh = web_app.test_client()
    assert fresh.login("staff").status_code == 401  # the old password is gone
    assert fresh.login("staff", password).status_code == 302
    entry = audit.entries(web_store, actor="admin")[0]
    assert entry["action"] == "users.reset" and entry["target"] == "staff" and not entry["detail"]


def test_an_admin_resets_their_own_password_on_the_account_page_instead(admin):
    response = admin.post("/users/admin/reset", data={}, headers=EN)
    assert response.status_code == 400 and "My account" in response.get_data(as_text=True)
    assert admin.get("/users").status_code == 200  # still logged in


def test_changing_a_role_takes_effect_at_once(admin, staff, web_store):
    assert staff.get("/users").status_code == 403
    assert admin.post("/users/staff/role", data={"role": "admin"}).status_code == 302
    assert staff.get("/users").status_code == 200
    assert audit.entries(web_store, actor="admin")[0]["detail"] == {"role": "admin"}
    bad = admin.post("/users/staff/role", data={"role": "root"}, headers=EN)
    assert bad.status_code == 400 and "Unknown role." in bad.get_data(as_text=True)


def test_an_unknown_user_is_not_found(admin):
    assert admin.get("/users/nobody/manage").status_code == 404
    assert admin.post("/users/nobody/disable", data={}).status_code == 404


# -- the audit log page -------------------------------------------------------
def test_the_audit_log_is_newest_first_with_translated_actions(admin, web_store):
    audit.record(web_store, "console:root", "something.new", "x", {"k": "v"})
    admin.post("/users/staff/disable", data={})
    page = admin.get("/users/audit", headers=EN).get_data(as_text=True)
    assert page.index("User disabled") < page.index("something.new") < page.index("Logged in")
    assert "k: v" in page


def test_the_audit_log_in_finnish(admin, web_store):
    admin.post("/users/staff/disable", data={})
    page = admin.get("/users/audit", headers={"Accept-Language": "fi"}).get_data(as_text=True)
    assert "Käyttäjä poistettu käytöstä" in page


def test_the_audit_log_filters_by_user_and_pages(admin, web_store):
    for n in range(60):
        audit.record(web_store, "console:root", "user.add", f"user{n:02d}")
    only_admin = admin.get("/users/audit?user=admin", headers=EN).get_data(as_text=True)
    assert "user00" not in only_admin and "Logged in" in only_admin
    first = admin.get("/users/audit?user=console:root", headers=EN).get_data(as_text=True)
    assert "user59" in first and "user00" not in first and "page=2" in first
    second = admin.get("/users/audit?user=console:root&page=2", headers=EN).get_data(as_text=True)
    assert "user00" in second and "user59" not in second
    assert admin.get("/users/audit?page=-3").status_code == 200


def test_an_audit_detail_with_a_script_is_shown_as_text(admin, web_store):
    audit.record(web_store, "admin", "cards.staff.add", "abcd1234", {"note": "<script>alert(1)</script>"})
    page = admin.get("/users/audit").get_data(as_text=True)
    assert "<script>alert" not in page and "&lt;script&gt;" in page
