"""Every route of the staff page refuses visitors it is not for.

The URL map is walked, so a route added later is checked without anyone
remembering to add it here: only the routes listed as public may answer an
anonymous visitor, and a route marked admin refuses staff.
"""

from __future__ import annotations

import pytest

from admin_web.security import ADMIN, PUBLIC, TOKEN, access_of
from webclient import rule_url

#: The only endpoints an anonymous visitor may reach (and why).
PUBLIC_ENDPOINTS = {
    "static",            # the stylesheet, script and icon
    "auth.login",
    "auth.first_run",    # says how to create the first user; nothing else
    "auth.language",     # the login page's language switch
}
PUBLIC_BLUEPRINTS = {"board"}   # the lobby screen: no personal data
TOKEN_BLUEPRINTS = {"api"}      # the central office's API: bearer tokens


def _routes(app):
    """Every (endpoint, method, URL) of the app, with a plausible value for each URL argument."""
    for rule in app.url_map.iter_rules():
        url = rule_url(app, rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, url


def _blueprint(endpoint: str) -> str:
    return endpoint.split(".")[0] if "." in endpoint else ""


def test_the_public_routes_are_exactly_the_expected_ones(web_app):
    public = {e for e, _, _ in _routes(web_app) if access_of(web_app, e) == PUBLIC}
    assert {e for e in public if _blueprint(e) not in PUBLIC_BLUEPRINTS} == PUBLIC_ENDPOINTS
    tokened = {e for e, _, _ in _routes(web_app) if access_of(web_app, e) == TOKEN}
    assert all(_blueprint(e) in TOKEN_BLUEPRINTS or e == "metrics" or e.endswith(".metrics") for e in tokened), tokened


def test_every_other_route_sends_an_anonymous_visitor_to_the_login_page(web_app):
    client = web_app.test_client()
    checked = 0
    for endpoint, method, url in _routes(web_app):
        level = access_of(web_app, endpoint)
        # From another machine on the LAN: the Pi itself may read /metrics without a token ([web] metrics_allow).
        response = client.open(url, method=method, data={}, environ_base={"REMOTE_ADDR": "192.0.2.1"})
        if level == TOKEN:
            assert response.status_code == 401, (method, url)
        elif level != PUBLIC:
            assert response.status_code == 302 and "/login" in response.headers["Location"], (method, url, response.status_code)
        checked += 1
    assert checked >= 8


def test_admin_routes_refuse_staff(web_app, staff):
    admin_routes = [(e, m, u) for e, m, u in _routes(web_app) if access_of(web_app, e) == ADMIN]
    for endpoint, method, url in admin_routes:
        response = staff.open(url, method=method, data={"csrf_token": staff.csrf_token()})
        assert response.status_code == 403, (method, url)


@pytest.mark.parametrize("path", ["/static/omaovi.css", "/static/omaovi.js", "/login"])
def test_public_assets_load_without_login(anonymous, path):
    assert anonymous.get(path).status_code == 200
