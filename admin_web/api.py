"""The API for the central office and for monitoring: ``/api/v1/stats``, ``/api/v1/status``, ``/metrics``.

Its callers are programs, not browsers: they send a bearer token made with
``omaovi token add`` (admin_web/tokens.py), carry no session and so need no CSRF
token. Every refusal is JSON that names what to fix. ``/metrics`` also answers
without a token to the addresses in ``[web] metrics_allow``, so a Prometheus on
the branch's LAN can scrape it with its stock config. The reference is
docs/web-api.md and docs/web-api-openapi.yaml.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from datetime import date, datetime, timezone

from flask import Blueprint, Response, g, jsonify, request

from admin_web import branch, branch_now, csrf, metrics, store, tokens
from admin_web.security import TOKEN, access
from device import stats
from device.events import parse_utc
from device.heartbeat import KEY as HEARTBEAT_KEY, Liveness, liveness
from device.policy import Reason

bp = Blueprint("api", __name__)
csrf.exempt(bp)

#: The longest range one stats request may cover, in days (both ends included).
MAX_DAYS = {"hour": 93}
MAX_DAYS_DEFAULT = 3 * 365 + 1
#: Every reason a tap can be refused for, so each period lists all of them, zeros included.
DENIAL_REASONS = tuple(r.value for r in Reason if r not in (Reason.GRANTED, Reason.STAFF))
#: The columns summed into ``totals``: every figure but the period's name.
SUMMED = stats.FIELDS[1:]
CSV_FIELDS = stats.FIELDS + tuple(f"denied_{reason}" for reason in DENIAL_REASONS)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Dates outside these are refused: no branch has figures there, and the far ends of
#: the calendar cannot even be turned into UTC instants.
FIRST_DATE, LAST_DATE = date(2000, 1, 1), date(2099, 12, 31)


class ApiError(Exception):
    """A refusal the caller can act on; answered as JSON naming the problem (and the parameter)."""

    def __init__(self, status: int, error: str, message: str, parameter: str | None = None):
        super().__init__(message)
        self.status, self.error, self.message, self.parameter = status, error, message, parameter


@bp.errorhandler(ApiError)
def _refuse(exc: ApiError):
    body = {"error": exc.error, "message": exc.message} | ({"parameter": exc.parameter} if exc.parameter else {})
    response = jsonify(body)
    response.status_code = exc.status
    if exc.status == 401:
        # RFC 6750: no error code when no token came at all, invalid_token when one did.
        challenge = 'Bearer realm="omaovi"' + (', error="invalid_token"' if exc.error == "invalid_token" else "")
        response.headers["WWW-Authenticate"] = challenge
    return response


@bp.before_request
def _authenticate():
    if request.endpoint == "api.metrics_view" and _address_allowed():
        return
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise ApiError(401, "unauthorized", "send an API token in the header 'Authorization: Bearer TOKEN' (made with 'omaovi token add NAME')")
    g.api_token = tokens.authenticate(store(), presented)
    if g.api_token is None:
        raise ApiError(401, "invalid_token", "the API token is wrong or has been revoked")


def _address_allowed() -> bool:
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped:  # a dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d
        address = address.ipv4_mapped
    return str(address) in branch().config.web.metrics_allow


# -- statistics -----------------------------------------------------------------
@bp.get("/api/v1/stats")
@access(TOKEN)
def stats_view():
    start, end, by = _stats_query()
    as_csv = _wants_csv()
    config = branch().config
    rows = [_with_all_reasons(row) for row in stats.summarize(store(), config.tz, start, end, by)]
    if as_csv:
        return Response(
            _csv(rows), content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="omaovi-{config.branch}-{start}-{end}-{by}.csv"'},
        )
    return jsonify({
        "branch": config.branch, "timezone": config.timezone, "from": start.isoformat(), "to": end.isoformat(), "by": by,
        "periods": rows, "totals": _totals(rows),
        # How physical_visits were counted here, for whoever compares branches.
        "repeat_tap_minutes": config.policy.repeat_tap_minutes,
        "people_counter_doors": [door.id for door in config.doors if door.counter_in_pin is not None],
    })


def _stats_query() -> tuple[date, date, str]:
    args = request.args
    by = args.get("by", "day")
    if by not in stats.BY:
        raise ApiError(400, "bad_parameter", f"by must be one of {', '.join(stats.BY)}", "by")
    start, end = _date_arg("from"), _date_arg("to")
    if end < start:
        raise ApiError(400, "bad_parameter", f"to ({end}) must not be before from ({start})", "to")
    limit = MAX_DAYS.get(by, MAX_DAYS_DEFAULT)
    if (end - start).days + 1 > limit:
        raise ApiError(
            400, "bad_parameter",
            f"from {start} to {end} is {(end - start).days + 1} days; with by={by} a request covers at most {limit}", "to",
        )
    return start, end, by


def _date_arg(name: str) -> date:
    text = request.args.get(name)
    if text is None:
        raise ApiError(400, "bad_parameter", f"{name} is required: a date written YYYY-MM-DD, such as 2026-11-01", name)
    try:
        if not _DATE.match(text):
            raise ValueError
        value = date.fromisoformat(text)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name} must be a date written YYYY-MM-DD, such as 2026-11-01", name) from None
    if not FIRST_DATE <= value <= LAST_DATE:
        raise ApiError(400, "bad_parameter", f"{name} must be from {FIRST_DATE} to {LAST_DATE}", name)
    return value


def _wants_csv() -> bool:
    """JSON unless the caller prefers CSV; 406 when it accepts neither."""
    if not request.accept_mimetypes:  # no Accept header: anything will do
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"])
    if best is None:
        raise ApiError(406, "not_acceptable", "the statistics come as application/json or text/csv; send one of them in Accept")
    return best == "text/csv"


def _with_all_reasons(row: dict) -> dict:
    return row | {"denials": {reason: row["denials"].get(reason, 0) for reason in DENIAL_REASONS}}


def _totals(rows: list[dict]) -> dict:
    totals = {name: round(sum(row[name] for row in rows), 2) for name in SUMMED}
    return totals | {"denials": {reason: sum(row["denials"][reason] for row in rows) for reason in DENIAL_REASONS}}


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: row[name] for name in stats.FIELDS} | {f"denied_{r}": n for r, n in row["denials"].items()})
    return out.getvalue()


# -- live state -----------------------------------------------------------------
@bp.get("/api/v1/status")
@access(TOKEN)
def status_view():
    """Doors, hours and sync as the device and sync last wrote them; nothing about any patron.

    What the device reports (doors, readers, the building) is given only while it
    runs: a stopped device has released its relays, whatever its last rows say.
    """
    config = branch().config
    live = store().status()
    now = branch_now.utc_now()
    schedule = store().schedule(config.tz)
    mode = schedule.mode_at(now)
    change = schedule.next_change(now)
    device = liveness(live.get(HEARTBEAT_KEY), now)
    return jsonify({
        "branch": config.branch,
        "time": _iso(now),
        "mode": mode,
        "next_change": {"at": _iso(change[0]), "mode": change[1]} if change else None,
        "doors": [_door(door, live, device.running) for door in config.doors],
        "device": _device(live.get(HEARTBEAT_KEY), device),
        "building": _building(live, now, mode, device.running),
        "sync": {
            stream: {key: _stored_time(state[key]) for key in ("last_attempt", "last_success", "last_error_at", "last_snapshot")}
            | {"last_error": state["last_error"]}
            for stream, state in store().sync_states().items()
        },
        "unpushed_events": store().unpushed_event_count(),
        "clock_drift_seconds": live["sync:clock_drift_seconds"]["value"] if "sync:clock_drift_seconds" in live else None,
        "sip2": _sip2(live.get("sip2")),
    })


def _sip2(reported: dict | None) -> dict | None:
    """The library system as the device itself last met it, or None (no [sip2], or no report yet)."""
    entry = _entry(reported)
    if entry is None:
        return None
    return entry | {key: _stored_time(entry.get(key)) for key in ("last_success", "last_error_at")}


def _door(door, live: dict, running: bool) -> dict:
    reported = live.get(f"door:{door.id}")
    value = reported["value"] if reported else {}
    return {
        "id": door.id, "name": door.label, "kind": door.kind,
        "state": value.get("state", "unknown") if running else "unknown",
        "lockdown": bool(value.get("lockdown", False)),
        "hold_until": value.get("hold_until"),
        "updated_at": _stored_time(reported["updated_at"]) if reported else None,
        "reader": _entry(live.get(f"reader:{door.id}")) if running else None,
    }


def _device(row: dict | None, device: Liveness) -> dict:
    value = row["value"] if row is not None and isinstance(row["value"], dict) else {}
    return {
        "running": device.running,
        "not_running_since": _iso(device.not_running_since) if device.not_running_since else None,
        "updated_at": _iso(device.heartbeat_at) if device.heartbeat_at else None,
        "heartbeat_age_seconds": round(device.heartbeat_age, 1) if device.heartbeat_age is not None else None,
        "started_at": _stored_time(value.get("started_at")),
        "pid": value.get("pid"),
    }


def _building(live: dict, now: datetime, mode: str, running: bool) -> dict:
    """The door extras the branch has, each None until the device reports it or while it is not running."""
    building = branch_now.building_now(branch().config, live, now, key_prefix=0)
    shown: dict = {}
    if building.has_lights:
        shown["lights"] = building.lights
    if building.has_alarm:
        shown["alarm_armed"] = building.alarm_armed
    if building.counts_people:
        shown["people_inside"] = building.people_inside
        shown["people_inside_after_close"] = branch_now.people_inside_after_close(building, mode)
    if building.pin_lockouts is not None:
        shown["pin_lockouts"] = len(building.pin_lockouts)
    return shown if running else dict.fromkeys(shown)


def _entry(reported: dict | None) -> dict | None:
    """A device_status value with the time it was written, or None when nothing was."""
    if reported is None:
        return None
    value = reported["value"] if isinstance(reported["value"], dict) else {"value": reported["value"]}
    return value | {"updated_at": _stored_time(reported["updated_at"])}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _stored_time(text: str | None) -> str | None:
    return _iso(parse_utc(text)) if text else None


# -- monitoring -----------------------------------------------------------------
@bp.get("/metrics")
@access(TOKEN)
def metrics_view():
    return Response(metrics.render(store(), branch().config), content_type=metrics.CONTENT_TYPE)
