"""The staff page under attack: forged posts, stored and reflected scripts, SQL
metacharacters, missing security headers and password guessing.

tests/test_web_access.py proves who may reach each route; this file proves what
a visitor who may reach it still cannot do. Routes come from the URL map, so a
page added later is attacked too, or the test names it as unknown.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from werkzeug.routing import AnyConverter, IntegerConverter

from admin_web import accounts
from device import config as config_mod
from device.events import Event
from webclient import PASSWORDS, WebClient, make_app, rule_url, write_branch
from test_web_api import seed_monday

SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '"><img src=x onerror=alert(1)>'
XSS = (SCRIPT, ATTRIBUTE)
#: Days staff may still plan (the page refuses a past day), a few days after the run's own today.
_TODAY = datetime.now(ZoneInfo("Europe/Helsinki")).date()
EXCEPTION_DAYS = (_TODAY + timedelta(days=3), _TODAY + timedelta(days=4))
SQL = ("' OR 1=1 --", '"; DROP TABLE events; --', "%", "_", "\\")
#: Bad input that is not SQL but breaks careless code the same way: a number SQLite
#: cannot hold, a digit int() refuses though str.isdigit() accepts it, and a NUL byte.
ODD = ("9" * 30, "-1", "²", "\x00")

#: The query parameters each page reads (grep request.args). A GET route missing here
#: fails test_every_get_route_is_listed, so its parameters get attacked too.
GET_PARAMETERS = {
    "today.index": (), "today.live": (),
    "hours.index": ("from",), "hours.weekly": (), "hours.add_exception": (), "hours.edit_exception": (),
    "events.index": ("door", "type", "reason", "from", "to", "card", "before"),
    "stats.index": ("from", "to", "by"), "stats.download": ("from", "to", "by"),
    "doors.index": (), "doors.state": (), "doors.confirm": ("until",),
    "cards.index": (), "cards.import_progress": (), "cards.remove_staff": (), "cards.remove_block": (),
    "users.index": (), "users.manage": (), "users.audit_log": ("user", "page"),
    "board.index": ("lang",), "announcements.index": (),
    "auth.login": ("next",), "auth.account": (), "auth.first_run": (),
}
#: Not HTML pages of the staff page: the API has its own suite, static files are files.
NOT_PAGES = {"static", "api.stats_view", "api.status_view", "api.metrics_view"}
#: A plausible value for each URL argument, so the route reaches its code rather than a 404.
URL_VALUES = {"username": "staff", "day": EXCEPTION_DAYS[0].isoformat(), "key": "0" * 64}


def _rules(app, method: str):
    for rule in app.url_map.iter_rules():
        if method in rule.methods and rule.endpoint not in NOT_PAGES:
            yield rule


def _build(app, rule, **override) -> str:
    """The rule's URL with this file's plausible values, and ``override`` for the arguments it names."""
    values = {name: URL_VALUES[name] for name in rule.arguments if name in URL_VALUES}
    return rule_url(app, rule, **values | {k: v for k, v in override.items() if k in rule.arguments})


def _snapshot(store) -> dict:
    """Every row of every table, but when sessions were last seen: each request moves that on."""
    tables = [r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    rows = {t: sorted(map(tuple, store.conn.execute(f'SELECT * FROM "{t}"')), key=repr) for t in tables if t != "web_sessions"}
    rows["web_sessions"] = sorted(store.conn.execute("SELECT id_hash, username FROM web_sessions"))
    return rows


def _unescaped(response) -> list[str]:
    """The payloads an HTML answer carries as markup; plain text is never run as a page (nosniff)."""
    if response.mimetype != "text/html":
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        return []
    html = response.get_data(as_text=True)
    return [payload for payload in XSS if payload in html] + (["<img src=x"] if "<img src=x" in html else [])


# -- CSRF -------------------------------------------------------------------------
#: What a forged post would send: enough for every form to do something if it were accepted.
FORGED = {
    "username": "mallory", "password": "mallory-password-1", "role": "admin", "language": "sv", "next": "/",
    "current_password": PASSWORDS["admin"], "new_password": "forged-password-1", "new_password_again": "forged-password-1",
    "staff_number": "20407188931", "staff_note": "forged", "block_number": "20407188932", "block_note": "forged",
    "block_until": "", "card_number": "20407188933", "date": f"{EXCEPTION_DAYS[1]:%d.%m.%Y}", "kind": "closed", "note": "forged",
    "until": "", "day0-0-start": "0", "day0-0-end": "24", "day0-0-mode": "self_service",
}


@pytest.mark.parametrize("token", ["missing", "empty", "another session's"])
def test_every_post_without_this_sessions_csrf_token_is_refused_and_changes_nothing(web_app, admin, web_store, token):
    web_store.set_exceptions({EXCEPTION_DAYS[0]: ()}, note="Closed for stocktaking")
    other = web_app.test_client()
    other.login("admin")
    csrf = {"missing": None, "empty": "", "another session's": other.csrf_token()}[token]
    before = _snapshot(web_store)
    posted = 0
    for rule in _rules(web_app, "POST"):
        data = FORGED | ({} if csrf is None else {"csrf_token": csrf})
        if csrf is None:
            response = super(WebClient, admin).post(_build(web_app, rule), data=data)
        else:
            response = admin.post(_build(web_app, rule), data=data)
        assert response.status_code == 400, (rule.rule, response.status_code)
        posted += 1
    assert posted >= 15
    assert _snapshot(web_store) == before
    assert admin.get("/account").status_code == 200  # the forged logout did not log out either


def test_a_post_with_the_sessions_own_token_does_act(admin, web_store):
    """The control for the test above: the forged form would have worked with the right token."""
    assert admin.post("/users", data=FORGED).status_code == 200
    assert accounts.get_user(web_store, "mallory") is not None


# -- stored and reflected scripts -------------------------------------------------
def _store_every_free_text(admin, web_store):
    """Put both payloads wherever a person (or a file, or the device) can leave text; return refused answers."""
    answers = []
    for number, payload in zip(("20407188901", "20407188902"), XSS):
        assert admin.post("/cards/staff", data={"staff_number": number, "staff_note": payload}).status_code == 302
    for number, payload in zip(("20407188903", "20407188904"), XSS):
        assert admin.post("/cards/blocks", data={"block_number": number, "block_note": payload, "block_until": ""}).status_code == 302
    for day, payload in zip(EXCEPTION_DAYS, XSS):
        assert admin.post("/hours/exceptions/new", data={"date": f"{day:%d.%m.%Y}", "kind": "closed", "note": payload}).status_code == 302
    patrons = io.StringIO()
    csv.writer(patrons).writerows([("card_number", "blocked_reason"), ("20407188905", SCRIPT), ("20407188906", ATTRIBUTE)])
    upload = {"csv_file": (io.BytesIO(patrons.getvalue().encode()), "patrons.csv")}
    assert admin.post("/cards/import", data=upload, content_type="multipart/form-data").status_code == 302
    for payload in XSS:
        # Refused, and the refusal must not echo the payload as markup.
        answers.append(admin.post("/users", data={"username": payload, "role": "staff"}))
        answers.append(admin.post("/hours/weekly", data={"day0-0-start": payload, "day0-0-end": payload, "day0-0-mode": payload}))
        answers.append(admin.post("/hours/exceptions/new", data={"date": payload, "kind": payload, "note": "x"}))
        answers.append(admin.get("/doors/entrance/hold", query_string={"until": payload}))
        answers.append(admin.post("/doors/entrance/hold", data={"until": payload}))
        bad_csv = f"card_number,self_service\n20407188907,{payload.replace(',', ' ')}\n".encode()
        answers.append(admin.post("/cards/import", data={"csv_file": (io.BytesIO(bad_csv), f"{payload}.csv")}, content_type="multipart/form-data"))
        kirkanta = json.dumps({"items": [{"date": payload, "closed": payload, "times": [{"from": payload, "to": "x", "status": payload}]}]})
        answers.append(admin.post("/hours/import", data={"file": (io.BytesIO(kirkanta.encode()), f"{payload}.json")}, content_type="multipart/form-data"))
        answers.append(admin.application.test_client().post("/login", data={"username": payload, "password": payload}))
    # Text the device and sync write from outside sources: a reader's error, a central service's error.
    web_store.set_status("reader:entrance", {"online": False, "detail": SCRIPT})
    web_store.set_status("reader:booth", {"online": False, "detail": ATTRIBUTE})
    web_store.note_sync_error("events", SCRIPT + ATTRIBUTE, datetime.now(timezone.utc))
    web_store.record([Event(ts=datetime.now(timezone.utc), door="entrance", type="tap", reason="blocked", mode="self_service",
                            card_key="ab" * 32, detail={"blocked_reason": SCRIPT, "note": ATTRIBUTE})])
    return answers


def test_stored_scripts_are_shown_as_text_on_every_page(admin, web_store, web_app):
    refused = _store_every_free_text(admin, web_store)
    for response in refused:
        assert response.status_code in (400, 401), (response.request.path, response.status_code)
        assert not _unescaped(response), response.request.path
    keys = [row["card_key"] for row in web_store.staff_cards() + web_store.local_blocks()]
    urls = [_build(web_app, rule) for rule in _rules(web_app, "GET")]
    urls += [f"/cards/staff/{key}/remove" for key in keys] + [f"/cards/blocks/{key}/remove" for key in keys]
    urls += [f"/hours/exceptions/{EXCEPTION_DAYS[1]}", f"/hours?from={EXCEPTION_DAYS[0]}", "/users/audit",
             "/events?type=tap", "/board?lang=en"]
    pages = {}
    for url in urls:
        response = admin.get(url, follow_redirects=True)
        assert response.status_code == 200, (url, response.status_code)
        pages[url] = response.get_data(as_text=True)
        assert not _unescaped(response), url
    # The payloads did reach the pages, as text; otherwise the test above proves nothing.
    for url in ("/cards", f"/hours?from={EXCEPTION_DAYS[0]}", "/users/audit"):
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[url], url
        assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in pages[url], url


# -- SQL metacharacters and other bad values in every query parameter ---------------
def test_every_get_route_is_listed(web_app):
    assert {rule.endpoint for rule in _rules(web_app, "GET")} - set(GET_PARAMETERS) == set()


def test_every_query_parameter_takes_sql_metacharacters_and_scripts_without_a_500(web_app, admin, web_store):
    seed_monday(web_store)
    events_before = web_store.conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
    checked = 0
    for rule in _rules(web_app, "GET"):
        arguments = [a for a, c in rule._converters.items() if not isinstance(c, (AnyConverter, IntegerConverter))]
        for value in SQL + XSS + ODD:
            attempts = [(_build(web_app, rule), {name: value}) for name in GET_PARAMETERS.get(rule.endpoint, ())]
            attempts += [(_build(web_app, rule, **{argument: value}), {}) for argument in arguments if "\x00" not in value]
            for url, query in attempts:
                response = admin.get(url, query_string=query)
                assert response.status_code in (200, 302, 400, 404), (url, query, response.status_code)
                assert not _unescaped(response), (url, query)
                checked += 1
    assert checked > 200
    assert web_store.conn.execute("SELECT * FROM events ORDER BY seq").fetchall() == events_before
    assert web_store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.parametrize("value", SQL)
def test_a_card_lookup_with_sql_metacharacters_is_refused_clearly(admin, web_store, value):
    seed_monday(web_store)
    count = web_store.conn.execute("SELECT count(*) FROM events").fetchone()[0]
    response = admin.post("/events/card", data={"card_number": value, "door": value, "from": value}, headers={"Accept-Language": "en"})
    assert response.status_code == 400
    assert "Card number: type the number printed on the card" in response.get_data(as_text=True)
    assert web_store.conn.execute("SELECT count(*) FROM events").fetchone()[0] == count


# -- security headers ---------------------------------------------------------------
def _html_pages(app, client):
    for rule in _rules(app, "GET"):
        response = client.get(_build(app, rule), follow_redirects=True)
        if response.mimetype == "text/html":
            yield rule.endpoint, response
    yield "404", client.get("/no-such-page")
    yield "400", client.get("/events", query_string={"door": SCRIPT})


def _assert_strict_headers(endpoint: str, response, *, frame_ancestors: str = "'none'"):
    csp = response.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, endpoint
    assert "script-src 'self'" in csp and "object-src 'none'" in csp, endpoint
    assert f"frame-ancestors {frame_ancestors}" in csp, endpoint
    assert response.headers.get("X-Content-Type-Options") == "nosniff", endpoint
    assert response.headers.get("Referrer-Policy") == "same-origin", endpoint
    assert response.headers.get("Cache-Control") == "no-store", endpoint
    if frame_ancestors == "'none'":
        assert response.headers.get("X-Frame-Options") == "DENY", endpoint
    else:
        assert "X-Frame-Options" not in response.headers, endpoint


def test_every_html_page_has_the_security_headers_and_none_may_be_framed(web_app, admin):
    pages = dict(_html_pages(web_app, admin))
    assert len(pages) >= 15
    for endpoint, response in pages.items():
        _assert_strict_headers(endpoint, response)


def test_only_the_board_may_be_framed_and_only_by_the_configured_site(tmp_path):
    site = "https://kirjasto.example.fi"
    config = write_branch(tmp_path)
    config.path.write_text(config.path.read_text().replace("[web]\n", f'[web]\nboard_frame_ancestors = ["{site}"]\n'))
    app = make_app(config_mod.load(config.path))
    app.test_client_class = WebClient
    client = app.test_client()
    client.login("admin")
    pages = dict(_html_pages(app, client))
    _assert_strict_headers("board.index", pages.pop("board.index"), frame_ancestors=site)
    for endpoint, response in pages.items():
        _assert_strict_headers(endpoint, response)


# -- password guessing --------------------------------------------------------------
def test_guessing_across_usernames_from_one_address_is_throttled(web_app, anonymous, web_store):
    """Spraying one password over many names counts against the address, not the names."""
    names = ["staff", "admin", "maija", "root", "kirjasto", "' OR 1=1 --"]
    for name in names[: accounts.MAX_FAILURES]:
        assert anonymous.post("/login", data={"username": name, "password": "Kesä2026!"}).status_code == 401
    # Now even the right password of a user not tried yet is refused, from this address.
    assert anonymous.post("/login", data={"username": "admin", "password": PASSWORDS["admin"]}).status_code == 429
    # A forwarded-for header claiming another address changes nothing: the app trusts the socket.
    spoofed = anonymous.post("/login", data={"username": "admin", "password": PASSWORDS["admin"]},
                             headers={"X-Forwarded-For": "192.0.2.99", "X-Real-IP": "192.0.2.99"})
    assert spoofed.status_code == 429
    fresh = web_app.test_client()
    assert fresh.post("/login", data={"username": "admin", "password": PASSWORDS["admin"]},
                      environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 302
