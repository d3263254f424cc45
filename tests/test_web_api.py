"""The API for the central office: tokens, /api/v1/stats, /api/v1/status and /metrics."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families

from admin_web import audit, branch_now, tokens
from device.cli import main
from device.events import Event, utc_text
from device.policy import Patron
from device.schedule import Period
from device.store import Store
from test_web_door_extras import EXTRAS as DOOR_EXTRAS  # a keypad with PINs, lights and alarm relays
from webclient import BRANCH_CONFIG, make_app, write_branch

HEL = ZoneInfo("Europe/Helsinki")


def seed_monday(store) -> None:
    """Hours and taps of one Monday at a branch; the expected figures are in EXPECTED_MONDAY."""
    store.set_weekly({0: (Period(7 * 60, 10 * 60, "self_service"), Period(10 * 60, 16 * 60, "staffed"),
                          Period(16 * 60, 21 * 60, "self_service"))})

    def at(hour: int, minute: int = 0) -> datetime:
        return datetime(2026, 11, 23, hour, minute, tzinfo=HEL).astimezone(timezone.utc)

    def tap(moment, reason, mode, door="entrance", **extra):
        return Event(ts=moment, door=door, type="tap", reason=reason, mode=mode, card_key="c0ffee" * 10, **extra)

    store.record(
        # One patron tapping three times: the device counts the later two as repeats, one physical visit.
        [tap(at(8, 15), "granted", "self_service", not_a_visit=repeat) for repeat in (False, True, True)]
        + [tap(at(11, 30), "granted", "staffed") for _ in range(2)]
        + [tap(at(12), "granted", "staffed", door="booth", door_kind="booth", detail={"booth_minutes": 90})]
        + [tap(at(8, 20), "blocked", "self_service") for _ in range(2)]
        + [tap(at(22), "closed", "closed"), tap(at(9), "staff", "self_service")]
    )


EXPECTED_MONDAY = {
    "visits_self_service": 3, "visits_staffed": 2, "booth_uses": 1, "booth_hours": 1.5, "staff_entries": 1, "exits": 0,
    "denied": 3, "self_service_open_hours": 8, "staffed_open_hours": 6, "granted_taps": 5, "physical_visits": 3,
    "pin_lockouts": 0, "self_service_open_hours_planned": 0, "staffed_open_hours_planned": 0,
}


def device_running(store) -> None:
    """A heartbeat written just now, as the running device writes it."""
    store.set_status("device", {"pid": 4321, "started_at": utc_text(datetime.now(timezone.utc))})


@pytest.fixture
def token(web_store) -> str:
    return tokens.add(web_store, "central")


@pytest.fixture
def api(anonymous, token):
    """A client that sends the token, as the central office's scripts do."""

    def get(url, **headers):
        return anonymous.get(url, headers={"Authorization": f"Bearer {token}"} | headers)

    return get


# -- tokens ---------------------------------------------------------------------
def test_tokens_are_made_listed_and_revoked_from_the_console_and_stored_only_hashed(branch_config, capsys):
    config = ["-c", str(branch_config.path)]
    assert main(["token", "add", "central-office", *config]) == 0
    secret = capsys.readouterr().out.strip()
    assert len(secret) >= 40
    assert main(["token", "list", *config]) == 0
    assert "central-office" in (listing := capsys.readouterr().out) and "active" in listing and "never used" in listing

    database = branch_config.database
    stored = b"".join(path.read_bytes() for path in database.parent.glob(database.name + "*"))
    assert secret.encode() not in stored
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in stored

    assert main(["token", "revoke", "central-office", *config]) == 0
    assert main(["token", "list", *config]) == 0
    assert "revoked" in capsys.readouterr().out
    from device.store import Store

    store = Store(database)
    assert tokens.authenticate(store, secret) is None
    assert [(e["action"], e["target"]) for e in audit.entries(store)][:2] == [
        ("token.revoke", "central-office"), ("token.add", "central-office")]
    assert audit.entries(store)[0]["actor"].startswith("console:")
    store.close()


def test_a_second_active_token_of_the_same_name_is_refused_but_a_revoked_name_can_be_reused(branch_config, capsys):
    config = ["-c", str(branch_config.path)]
    assert main(["token", "add", "prometheus", *config]) == 0
    assert main(["token", "add", "prometheus", *config]) == 1
    assert "already an active token" in capsys.readouterr().err
    assert main(["token", "add", "Not A Name", *config]) == 1
    assert main(["token", "revoke", "nobody", *config]) == 1
    assert main(["token", "revoke", "prometheus", *config]) == 0
    assert main(["token", "add", "prometheus", *config]) == 0


@pytest.mark.parametrize("header", [None, "Bearer not-the-token", "Basic YWRtaW46YWRtaW4=", "Bearer "])
@pytest.mark.parametrize("url", ["/api/v1/stats?from=2026-11-23&to=2026-11-23", "/api/v1/status"])
def test_a_missing_or_wrong_token_gets_401_with_a_bearer_challenge_and_json(anonymous, token, url, header):
    response = anonymous.get(url, headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.is_json and response.get_json()["message"]


def test_a_revoked_token_is_refused_at_once(api, web_store):
    assert api("/api/v1/status").status_code == 200
    tokens.revoke(web_store, "central")
    refused = api("/api/v1/status")
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["WWW-Authenticate"]


def test_a_staff_login_is_not_a_token(staff):
    assert staff.get("/api/v1/status").status_code == 401


def test_the_last_use_is_noted_at_most_once_a_minute(api, web_store):
    def last_used():
        return web_store.conn.execute("SELECT last_used_at FROM api_tokens WHERE name = 'central'").fetchone()[0]

    assert last_used() is None
    api("/api/v1/status")
    first = last_used()
    assert first is not None
    api("/api/v1/status")
    assert last_used() == first
    a_while_ago = utc_text(datetime.now(timezone.utc) - timedelta(minutes=5))
    with web_store.conn:
        web_store.conn.execute("UPDATE api_tokens SET last_used_at = ?", (a_while_ago,))
    api("/api/v1/status")
    assert last_used() > a_while_ago


# -- statistics -----------------------------------------------------------------
def test_stats_as_json_match_the_counted_taps_and_the_hours(api, web_store):
    seed_monday(web_store)
    body = api("/api/v1/stats?from=2026-11-23&to=2026-11-24").get_json()
    assert (body["branch"], body["by"], body["timezone"]) == ("kallio", "day", "Europe/Helsinki")
    monday, tuesday = body["periods"]
    assert monday["period"] == "2026-11-23"
    assert {k: monday[k] for k in EXPECTED_MONDAY} == EXPECTED_MONDAY
    assert monday["denials"]["blocked"] == 2 and monday["denials"]["closed"] == 1 and monday["denials"]["unknown_card"] == 0
    assert tuesday["visits_self_service"] == 0 and tuesday["self_service_open_hours"] == 0
    assert body["totals"]["visits_self_service"] == 3 and body["totals"]["denials"]["blocked"] == 2


def test_stats_by_hour_put_each_tap_in_its_local_hour(api, web_store):
    seed_monday(web_store)
    periods = api("/api/v1/stats?from=2026-11-23&to=2026-11-23&by=hour").get_json()["periods"]
    assert len(periods) == 24
    assert periods[8]["period"] == "2026-11-23T08:00+02:00"
    assert periods[8]["visits_self_service"] == 3 and periods[8]["denied"] == 2
    assert periods[8]["self_service_open_hours"] == 1 and periods[11]["staffed_open_hours"] == 1


def test_stats_as_csv_hold_the_same_figures(api, web_store):
    seed_monday(web_store)
    response = api("/api/v1/stats?from=2026-11-23&to=2026-11-24", Accept="text/csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["period"] for r in rows] == ["2026-11-23", "2026-11-24"]
    monday = rows[0]
    assert {k: float(monday[k]) for k in EXPECTED_MONDAY} == EXPECTED_MONDAY
    assert monday["denied_blocked"] == "2" and monday["denied_closed"] == "1" and monday["denied_wrong_pin"] == "0"


@pytest.mark.parametrize("query, parameter", [
    ("to=2026-11-23", "from"),
    ("from=2026-11-23", "to"),
    ("from=23.11.2026&to=2026-11-24", "from"),
    ("from=2026-02-30&to=2026-03-01", "from"),
    ("from=2026-11-23&to=2026-11-22", "to"),
    ("from=2026-11-23&to=2026-11-24&by=year", "by"),
    ("from=2020-01-01&to=2026-11-24", "to"),
    ("from=2026-01-01&to=2026-04-30&by=hour", "to"),
    ("from=9999-12-31&to=9999-12-31", "from"),
    ("from=0001-01-01&to=0001-01-02", "from"),
])
def test_bad_stats_parameters_get_400_naming_the_parameter(api, query, parameter):
    response = api(f"/api/v1/stats?{query}")
    assert response.status_code == 400
    assert response.get_json()["parameter"] == parameter
    assert parameter in response.get_json()["message"]


def test_the_longest_allowed_ranges_are_answered(api):
    assert api("/api/v1/stats?from=2026-01-01&to=2026-04-03&by=hour").status_code == 200  # 93 days
    assert api("/api/v1/stats?from=2024-01-01&to=2026-12-31").status_code == 200  # 3 years


def test_stats_in_a_format_nobody_offers_get_406(api):
    response = api("/api/v1/stats?from=2026-11-23&to=2026-11-23", Accept="image/png")
    assert response.status_code == 406 and response.get_json()["error"] == "not_acceptable"


# -- live state -----------------------------------------------------------------
def test_status_shows_doors_mode_and_sync_but_no_card(api, web_store):
    seed_monday(web_store)
    web_store.put_patrons([Patron(card_key="abad1dea" * 8, self_service=True)], source="csv")
    device_running(web_store)
    web_store.set_status("door:entrance", {"state": "held_open", "lockdown": False, "hold_until": None})
    web_store.set_status("reader:entrance", {"online": False, "detail": "/dev/ttyUSB0: no such device"})
    web_store.note_sync_error("patrons", "HTTP 503 from the central service", datetime.now(timezone.utc))
    response = api("/api/v1/status")
    body = response.get_json()
    doors = {d["id"]: d for d in body["doors"]}
    assert doors["entrance"]["state"] == "held_open" and doors["entrance"]["reader"]["online"] is False
    assert doors["booth"]["state"] == "unknown" and doors["booth"]["reader"] is None
    assert body["mode"] in ("staffed", "self_service", "closed")
    assert body["next_change"]["mode"] != body["mode"]
    assert body["sync"]["patrons"]["last_error"] == "HTTP 503 from the central service"
    assert body["unpushed_events"] == 10
    assert body["device"]["running"] is True and body["device"]["not_running_since"] is None
    assert body["device"]["pid"] == 4321 and 0 <= body["device"]["heartbeat_age_seconds"] < 60
    assert body["building"] == {}, "a branch without door extras lists none"
    text = response.get_data(as_text=True)
    assert "c0ffee" not in text and "abad1dea" not in text


# -- monitoring -----------------------------------------------------------------
def _samples(response) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True)) for s in family.samples
    }


def test_metrics_with_a_token_give_doors_counts_and_sync(api, web_store):
    seed_monday(web_store)
    device_running(web_store)
    web_store.set_status("door:entrance", {"state": "forced", "lockdown": False, "hold_until": None})
    web_store.set_status("door:booth", {"state": "unlocked", "lockdown": True, "hold_until": None})
    at = datetime(2026, 11, 25, 10, tzinfo=timezone.utc)
    web_store.note_sync_success("patrons", at)
    web_store.note_sync_error("events", "cannot connect", at)
    response = api("/metrics", REMOTE_ADDR="192.0.2.7")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    samples = _samples(response)
    assert samples[("omaovi_door_open", (("door", "entrance"),))] == 1
    assert samples[("omaovi_door_alarm", (("door", "entrance"),))] == 1
    assert samples[("omaovi_door_unlocked", (("door", "booth"),))] == 1
    assert samples[("omaovi_door_lockdown", (("door", "booth"),))] == 1
    assert samples[("omaovi_visits_total", (("door", "entrance"), ("mode", "self_service")))] == 3
    assert samples[("omaovi_denials_total", (("door", "entrance"), ("reason", "blocked")))] == 2
    assert samples[("omaovi_booth_minutes_total", (("door", "booth"),))] == 90
    assert samples[("omaovi_sync_last_success_timestamp_seconds", (("stream", "patrons"),))] == at.timestamp()
    assert samples[("omaovi_sync_error", (("stream", "events"),))] == 1
    assert samples[("omaovi_sync_error", (("stream", "patrons"),))] == 0
    assert samples[("omaovi_unpushed_events", ())] == 10
    assert samples[("omaovi_device_up", ())] == 1
    assert 0 <= samples[("omaovi_device_heartbeat_age_seconds", ())] < 60


#: Wednesday 25.11.2026 14.00 in Helsinki; the monitor's clock in the tests below.
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def heartbeat_at(store, moment: datetime, **value) -> None:
    store.set_status("device", {"pid": 4321, "started_at": utc_text(moment - timedelta(hours=5))} | value)
    with store.conn:
        store.conn.execute("UPDATE device_status SET updated_at = ? WHERE key = 'device'", (utc_text(moment),))


@pytest.mark.parametrize("how", ["crashed", "stopped"])
def test_a_device_that_stopped_is_down_and_its_last_door_states_are_not_shown(api, web_store, monkeypatch, how):
    monkeypatch.setattr(branch_now, "utc_now", lambda: NOW)
    web_store.set_status("door:entrance", {"state": "unlocked", "lockdown": False, "hold_until": None})
    web_store.set_status("reader:entrance", {"online": True, "detail": "ok"})
    if how == "crashed":  # a kill, a crash or a hung loop: the heartbeat only goes quiet
        heartbeat_at(web_store, NOW - timedelta(seconds=91))
        since = "2026-11-25T11:58:29Z"
    else:  # a clean stop says so at once
        heartbeat_at(web_store, NOW - timedelta(seconds=5), stopped_at=utc_text(NOW - timedelta(seconds=5)))
        since = "2026-11-25T11:59:55Z"

    samples = _samples(api("/metrics"))
    assert samples[("omaovi_device_up", ())] == 0
    assert samples[("omaovi_device_heartbeat_age_seconds", ())] == (91 if how == "crashed" else 5)
    assert not [name for name, _ in samples if name in ("omaovi_door_unlocked", "omaovi_reader_online")], "no stale door states"

    body = api("/api/v1/status").get_json()
    assert body["device"]["running"] is False and body["device"]["not_running_since"] == since
    entrance = body["doors"][0]
    assert entrance["state"] == "unknown" and entrance["reader"] is None

    heartbeat_at(web_store, NOW - timedelta(seconds=89))
    assert _samples(api("/metrics"))[("omaovi_door_unlocked", (("door", "entrance"),))] == 1, "fresh again: shown again"


def test_a_device_that_never_ran_is_down_with_no_heartbeat_age(api, web_store):
    web_store.set_status("door:entrance", {"state": "locked", "lockdown": False, "hold_until": None})
    samples = _samples(api("/metrics"))
    assert samples[("omaovi_device_up", ())] == 0
    assert ("omaovi_device_heartbeat_age_seconds", ()) not in samples
    device = api("/api/v1/status").get_json()["device"]
    assert device == {"running": False, "not_running_since": None, "updated_at": None, "heartbeat_age_seconds": None,
                      "started_at": None, "pid": None}


def test_metrics_are_refused_to_an_address_off_the_allow_list_without_a_token(anonymous, token):
    refused = anonymous.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    # The default allow-list is this machine, over IPv4, IPv6 and IPv4 on a dual-stack socket.
    for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert anonymous.get("/metrics", environ_base={"REMOTE_ADDR": address}).status_code == 200


def test_metrics_follow_the_configured_allow_list(tmp_path):
    config = write_branch(tmp_path)
    config.path.write_text(BRANCH_CONFIG.replace("[web]\n", '[web]\nmetrics_allow = ["192.0.2.10"]\n'))
    from device import config as config_mod

    client = make_app(config_mod.load(config.path)).test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.10"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 401


def test_status_and_metrics_show_the_door_extras_a_monitor_alerts_on(tmp_path, monkeypatch):
    """"The alarm is not armed at night", "people are inside after closing": each one figure to alert on."""
    (tmp_path / "pepper.key").write_bytes(b"p" * 32)
    config = write_branch(tmp_path, DOOR_EXTRAS)
    client, store = make_app(config).test_client(), Store(config.database)
    headers = {"Authorization": f"Bearer {tokens.add(store, 'prometheus')}"}
    monkeypatch.setattr(branch_now, "utc_now", lambda: NOW)
    store.set_weekly({})  # closed all day
    heartbeat_at(store, NOW - timedelta(seconds=10))
    store.set_status("building", {"lights": False, "alarm_armed": False})
    store.set_status("occupancy", {"count": 2})
    store.set_status("pin_lockouts", [{"card_key": "ab" * 32, "until": utc_text(NOW + timedelta(minutes=10))},
                                      {"card_key": "cd" * 32, "until": utc_text(NOW - timedelta(minutes=1))}])
    store.record([
        Event(NOW - timedelta(hours=1), "entrance", "pin_lockout", mode="self_service", card_key="ab" * 32),
        Event(NOW - timedelta(hours=2), "entrance", "tailgating", mode="self_service", detail={"people_in": 2, "grants": 1}),
        Event(NOW - timedelta(hours=3), "building", "people_inside_after_close", mode="closed", door_kind="building", detail={"count": 2}),
    ])

    status = client.get("/api/v1/status", headers=headers)
    assert status.get_json()["building"] == {
        "lights": False, "alarm_armed": False, "people_inside": 2, "people_inside_after_close": 2, "pin_lockouts": 1,
    }
    assert "abab" not in status.get_data(as_text=True), "no card key"
    samples = _samples(client.get("/metrics", headers=headers))
    assert {name: value for (name, _), value in samples.items() if name in (
        "omaovi_lights_on", "omaovi_alarm_armed", "omaovi_people_inside", "omaovi_people_inside_after_close", "omaovi_pin_locked_out_cards",
    )} == {"omaovi_lights_on": 0, "omaovi_alarm_armed": 0, "omaovi_people_inside": 2, "omaovi_people_inside_after_close": 2,
           "omaovi_pin_locked_out_cards": 1}
    assert samples[("omaovi_pin_lockouts_total", (("door", "entrance"),))] == 1
    assert samples[("omaovi_tailgating_total", (("door", "entrance"),))] == 1
    assert samples[("omaovi_closings_with_people_inside_total", (("door", "building"),))] == 1

    store.set_weekly({day: [Period(8 * 60, 16 * 60, "staffed")] for day in range(7)})  # open at 14.00
    assert client.get("/api/v1/status", headers=headers).get_json()["building"]["people_inside_after_close"] == 0
    assert _samples(client.get("/metrics", headers=headers))[("omaovi_people_inside_after_close", ())] == 0

    heartbeat_at(store, NOW - timedelta(minutes=5))  # the device went quiet: its last word is no longer true
    assert set(client.get("/api/v1/status", headers=headers).get_json()["building"].values()) == {None}
    samples = _samples(client.get("/metrics", headers=headers))
    assert ("omaovi_alarm_armed", ()) not in samples and ("omaovi_people_inside", ()) not in samples
    store.close()


# -- the documentation ------------------------------------------------------------
WEB_API_DOC = (Path(__file__).resolve().parent.parent / "docs" / "web-api.md").read_text(encoding="utf-8")


def doc_example(name: str) -> str:
    return re.search(rf"<!-- example: {name} -->\s*```\w+\n(.*?)```", WEB_API_DOC, re.S).group(1)


def test_the_documented_statistics_are_what_the_branch_answers(api, web_store):
    seed_monday(web_store)
    assert api("/api/v1/stats?from=2026-11-23&to=2026-11-23").get_json() == json.loads(doc_example("stats-day"))
    csv_text = api("/api/v1/stats?from=2026-11-23&to=2026-11-24", Accept="text/csv").get_data(as_text=True)
    assert csv_text.replace("\r\n", "\n") == doc_example("stats-csv")


def test_the_documented_status_has_the_fields_the_branch_sends(api, web_store):
    device_running(web_store)
    web_store.set_status("door:entrance", {"state": "locked", "lockdown": False, "hold_until": None})
    web_store.note_sync_success("patrons", datetime.now(timezone.utc))
    real, documented = api("/api/v1/status").get_json(), json.loads(doc_example("status"))
    assert set(real) == set(documented)
    assert set(real["doors"][0]) == set(documented["doors"][0])
    assert set(real["device"]) == set(documented["device"])
    assert set(real["sync"]["patrons"]) == set(documented["sync"]["patrons"])


def test_every_documented_metric_is_in_the_reference_table():
    """The table in docs/web-api.md lists each family the collector can give."""
    source = (Path(__file__).resolve().parent.parent / "admin_web" / "metrics.py").read_text(encoding="utf-8")
    families = set(re.findall(r'"(omaovi_[a-z_]+)"', source))
    documented = set(re.findall(r"^\| `(omaovi_[a-z_]+?)(?:_total)?` \|", WEB_API_DOC, re.M))
    assert families and families <= documented, sorted(families - documented)


def test_the_openapi_file_describes_every_route_of_the_api(web_app):
    openapi = (Path(__file__).resolve().parent.parent / "docs" / "web-api-openapi.yaml").read_text(encoding="utf-8")
    assert openapi.startswith("openapi: 3.1.0\n")
    routes = [rule.rule for rule in web_app.url_map.iter_rules() if rule.endpoint.startswith("api.")]
    assert sorted(routes) == ["/api/v1/stats", "/api/v1/status", "/metrics"]
    for route in routes:
        assert f"\n  {route}:\n" in openapi


def test_the_openapi_file_lists_every_figure_a_period_has(api, web_store):
    openapi = (Path(__file__).resolve().parent.parent / "docs" / "web-api-openapi.yaml").read_text(encoding="utf-8")
    answer = api("/api/v1/stats?from=2026-11-23&to=2026-11-23").get_json()
    required = re.search(r"\n    Figures:\n.*?required: \[(.*?)\]", openapi, re.S).group(1)
    assert set(re.split(r",\s*", required.strip())) == set(answer["periods"][0]) - {"period"}
    required = re.search(r"\n    Stats:\n.*?required: \[(.*?)\]", openapi, re.S).group(1)
    assert set(re.split(r",\s*", required.strip())) == set(answer)


def test_status_and_metrics_show_the_library_system_as_the_device_met_it(api, web_store):
    assert api("/api/v1/status").get_json()["sip2"] is None
    web_store.set_status("sip2", {
        "breaker": "open", "last_success": "2026-11-25T09:12:03.000000Z",
        "last_error": "cannot connect to 10.20.0.7:6001: Network is unreachable",
        "last_error_at": "2026-11-25T11:45:40.000000Z",
    })

    sip2 = api("/api/v1/status").get_json()["sip2"]
    assert (sip2["breaker"], sip2["last_success"], sip2["last_error_at"]) == (
        "open", "2026-11-25T09:12:03Z", "2026-11-25T11:45:40Z")
    assert sip2["last_error"].endswith("Network is unreachable") and sip2["updated_at"]
    samples = _samples(api("/metrics", REMOTE_ADDR="192.0.2.7"))
    assert samples[("omaovi_sip2_breaker_open", ())] == 1
    assert samples[("omaovi_sip2_last_error_timestamp_seconds", ())] == datetime(2026, 11, 25, 11, 45, 40, tzinfo=timezone.utc).timestamp()
    assert samples[("omaovi_sip2_last_success_timestamp_seconds", ())] == datetime(2026, 11, 25, 9, 12, 3, tzinfo=timezone.utc).timestamp()
