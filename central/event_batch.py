"""Checking a branch's batch of door events before any of it is stored.

A batch is taken whole or refused whole (400), so that a branch's outbox position
stays simple: everything up to a batch's last ``seq`` is either on the central side
or not. The refusal lists every bad event by index and uuid with what was wrong, so
the branch can set exactly those aside (quarantine) and send the rest again.

Event types and reasons are checked for shape, not against today's list: a branch
running a newer version may send a type this service has not heard of, and that must
not stop its outbox.
"""

from __future__ import annotations

import json
import re
import uuid as uuid_mod
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sync import json_fields as field
from sync.json_input import decode_json

#: The most events in one POST; the branch sends at most this many.
MAX_EVENTS = 500
#: The largest ``detail`` accepted, as JSON text.
MAX_DETAIL_CHARS = 4000
#: Problems listed in one refusal; more are counted.
MAX_PROBLEMS_LISTED = 50
MODES = ("self_service", "staffed", "closed")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_DOOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Event:
    uuid: str
    seq: int
    ts: datetime
    door: str
    type: str
    reason: str | None
    mode: str | None
    card_key: str | None
    detail: dict | None


@dataclass(frozen=True)
class Problem:
    index: int
    uuid: str | None
    error: str

    def as_json(self) -> dict:
        return {"index": self.index, "uuid": self.uuid, "error": self.error}


class BatchRefused(ValueError):
    """The batch as a whole is not an event batch, or some of its events are malformed."""

    def __init__(self, message: str, problems: list[Problem] | None = None, more: int = 0):
        super().__init__(message)
        self.problems = problems or []
        self.more = more

    def as_json(self) -> dict:
        answer: dict[str, Any] = {"error": str(self)}
        if self.problems:
            answer["problems"] = [problem.as_json() for problem in self.problems]
            answer["more_problems"] = self.more
        return answer


def parse_batch(body: bytes) -> list[Event]:
    document = decode_json(body, BatchRefused)
    if not isinstance(document, dict) or "events" not in document:
        raise BatchRefused('expected a JSON object with "events", a list of events')
    items = document["events"]
    if not isinstance(items, list) or not items:
        raise BatchRefused(f"events: expected a list of 1 to {MAX_EVENTS} events, got {field.show(items)}")
    if len(items) > MAX_EVENTS:
        raise BatchRefused(f"events: {len(items)} events is more than the {MAX_EVENTS} allowed in one batch; send them in smaller batches")
    parsed: list[Event] = []
    problems: list[Problem] = []
    for index, item in enumerate(items):
        try:
            parsed.append(parse_event(item, f"events[{index}]"))
        except field.FieldError as exc:
            problems.append(Problem(index, _uuid_of(item), str(exc)))
    if problems:
        listed = problems[:MAX_PROBLEMS_LISTED]
        raise BatchRefused(
            f"{len(problems)} of {len(items)} events are malformed; nothing in the batch was stored", listed, len(problems) - len(listed)
        )
    return parsed


def parse_event(item: Any, where: str) -> Event:
    if not isinstance(item, dict):
        raise field.FieldError(f"{where}: expected an object, got {field.show(item)}")
    return Event(
        uuid=_uuid(item, where),
        seq=_seq(item, where),
        ts=_utc(item, where),
        door=_matching(item, "door", where, _DOOR, "a door id"),
        type=_matching(item, "type", where, _NAME, "an event type in lowercase letters, digits and _"),
        reason=_optional(item, "reason", where, lambda: _matching(item, "reason", where, _NAME, "a reason in lowercase letters, digits and _")),
        mode=_optional(item, "mode", where, lambda: _mode(item, where)),
        card_key=_optional(item, "card_key", where, lambda: field.card_key(item, where)),
        detail=_optional(item, "detail", where, lambda: _detail(item, where)),
    )


def _optional(item: dict, key: str, where: str, check):
    return None if field.required(item, key, where) is None else check()


def _uuid(item: dict, where: str) -> str:
    value = field.required(item, "uuid", where)
    try:
        if isinstance(value, str) and str(uuid_mod.UUID(value)) == value:
            return value
    except ValueError:
        pass
    raise field.FieldError(f"{where}.uuid: {field.show(value)} is not a UUID in its canonical lowercase form")


def _seq(item: dict, where: str) -> int:
    value = field.required(item, "seq", where)
    if type(value) is not int or not 1 <= value < 2**63:
        raise field.FieldError(f"{where}.seq: expected a whole number of 1 or more, got {field.show(value)}")
    return value


def _utc(item: dict, where: str) -> datetime:
    moment = field.instant(item, "ts", where)
    if moment.utcoffset().total_seconds() != 0:
        raise field.FieldError(f"{where}.ts: {field.show(item['ts'])} is not in UTC; send it as 2026-11-23T18:04:12.345678Z")
    return moment.astimezone(timezone.utc)


def _matching(item: dict, key: str, where: str, pattern: re.Pattern, what: str) -> str:
    value = field.required(item, key, where)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise field.FieldError(f"{where}.{key}: {field.show(value)} is not {what}")
    return value


def _mode(item: dict, where: str) -> str:
    value = item["mode"]
    if value not in MODES:
        raise field.FieldError(f"{where}.mode: {field.show(value)} is not one of {', '.join(MODES)}")
    return value


def _detail(item: dict, where: str) -> dict:
    value = item["detail"]
    if not isinstance(value, dict):
        raise field.FieldError(f"{where}.detail: expected an object or null, got {field.show(value)}")
    if len(json.dumps(value)) > MAX_DETAIL_CHARS:
        raise field.FieldError(f"{where}.detail: more than {MAX_DETAIL_CHARS} characters of JSON")
    return value


def _uuid_of(item: Any) -> str | None:
    value = item.get("uuid") if isinstance(item, dict) else None
    return value if isinstance(value, str) and len(value) <= 36 else None
