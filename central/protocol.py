"""Protocol v1 over HTTP (docs/central-protocol.md): what ``omaovi sync`` on each branch talks to.

Every answer is JSON, errors too, with a sentence that says what was wrong. A branch
is let in only with one of its own tokens; a cursor this service cannot continue
from is always ``410 Gone``; a request beyond ``max_concurrent`` at once is told to
come back (``503`` with ``Retry-After``) instead of queueing until it times out.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Callable

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from sqlalchemy import Engine
from werkzeug.exceptions import HTTPException

from central import db, event_store, feeds, tokens
from central.config import CentralSettings
from central.cursors import CursorGone
from central.event_batch import BatchRefused, parse_batch
from central.hours import MAX_DAYS, branch_schedule, hours_items

#: The largest event batch body: 500 events with their details fit in well under this.
MAX_EVENTS_BODY = 4 * 1024 * 1024
_BEARER = re.compile(r"Bearer ([\x21-\x7e]{1,200})")

bp = Blueprint("protocol", __name__, url_prefix="/v1/branches/<branch>")


@dataclass
class Service:
    """What the protocol views share: the settings, the database and the gate for overload."""

    settings: CentralSettings
    engine: Engine
    gate: threading.BoundedSemaphore
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))

    @classmethod
    def of(cls, app: Flask) -> "Service":
        return app.extensions["omaovi.central"]


def service() -> Service:
    return Service.of(current_app)


def now() -> datetime:
    return service().clock()


@bp.url_value_preprocessor
def _take_branch(_endpoint, values) -> None:
    g.branch = values.pop("branch")


@bp.before_request
def _admit() -> Response | None:
    if not service().gate.acquire(blocking=False):
        answer = _error(503, "the central service is busy; try again shortly")
        answer.headers["Retry-After"] = str(service().settings.protocol.retry_after)
        return answer
    g.admitted = True
    match = _BEARER.fullmatch(request.headers.get("Authorization", ""))
    if match is None or not _authenticated(g.branch, match[1]):
        return _error(401, "unknown or missing token for this branch")
    return None


@bp.teardown_request
def _leave(_exc) -> None:
    if g.pop("admitted", False):
        service().gate.release()


def _authenticated(branch: str, token: str) -> bool:
    """Checked in a read; the write of ``last_used`` comes once a minute, so that on SQLite
    a branch's request does not queue for the one write lock just to be let in."""
    with db.reading(service().engine) as connection:
        found = tokens.active_token(connection, branch, token)
    if found is None:
        return False
    token_id, last_used = found
    if tokens.use_is_stale(last_used, now()):
        with db.writing(service().engine) as connection:
            tokens.note_use(connection, token_id, now())
    return True


@bp.get("/patrons")
def patrons() -> Response:
    return _page(lambda connection, key, cursor: feeds.patrons_page(connection, key, g.branch, cursor, _page_size()))


@bp.get("/reservations")
def reservations() -> Response:
    return _page(lambda connection, key, cursor: feeds.reservations_page(connection, key, g.branch, cursor, _page_size(), now()))


@bp.get("/hours")
def hours() -> Response:
    first, first_error = _date_parameter("from")
    last, last_error = _date_parameter("to")
    if first_error or last_error:
        return _error(400, first_error or last_error)
    if last < first:
        return _error(400, f"to ({last}) is before from ({first})")
    if (last - first).days >= MAX_DAYS:
        return _error(400, f"from {first} to {last} is more than {MAX_DAYS} days; ask for a shorter range")
    with db.reading(service().engine) as connection:
        schedule = branch_schedule(connection, g.branch)
    if schedule is None:
        return _error(404, "this branch's hours are not kept by the central service; the branch keeps its own")
    return jsonify({"items": hours_items(schedule, first, last)})


@bp.post("/events")
def events() -> Response:
    if request.content_length is None:
        return _error(411, "send the batch with a Content-Length")
    if request.content_length > MAX_EVENTS_BODY:
        return _error(413, f"a batch body may be at most {MAX_EVENTS_BODY} bytes; send smaller batches")
    try:
        batch = parse_batch(request.get_data(cache=False))
    except BatchRefused as refused:
        return _json(400, refused.as_json())
    with db.writing(service().engine) as connection:
        accepted, duplicates = event_store.store(connection, g.branch, batch, now())
    return jsonify({"accepted": accepted, "duplicates": duplicates})


@bp.app_errorhandler(HTTPException)
def _http_error(error: HTTPException):
    if request.blueprint != bp.name and not request.path.startswith("/v1/"):
        return error
    return _error(error.code or 500, error.description or error.name)


def _page(read) -> Response:
    cursor = request.args.get("cursor")
    with db.reading(service().engine) as connection:
        try:
            return jsonify(read(connection, db.cursor_key(connection), cursor))
        except CursorGone as gone:
            return _error(410, f"cursor gone: {gone}; take a full snapshot (ask without a cursor)")


def _page_size() -> int:
    return service().settings.protocol.page_size


def _date_parameter(name: str) -> tuple[date | None, str | None]:
    text = request.args.get(name)
    if text is None:
        return None, f"{name}: missing; give the date as YYYY-MM-DD"
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        try:
            return date.fromisoformat(text), None
        except ValueError:
            pass
    return None, f"{name}: {text[:40]!r} is not a date; give it as YYYY-MM-DD"


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


def _json(status: int, document: dict) -> Response:
    answer = jsonify(document)
    answer.status_code = status
    return answer
