"""Storing the branches' door events exactly once, and acting on the few that matter centrally."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from central import bookings, schema
from central.event_batch import Event

NO_SHOW = "reservation_no_show"


def store(connection: Connection, branch: str, batch: list[Event], now: datetime) -> tuple[int, int]:
    """Insert the events not already here; returns (accepted, duplicates).

    Duplicates are normal: a branch that lost power between our answer and marking
    the batch sent sends it again."""
    table = schema.events
    fresh: dict[str, Event] = {}
    for event in batch:
        fresh.setdefault(event.uuid, event)
    known = set(connection.execute(select(table.c.uuid).where(table.c.uuid.in_(list(fresh)))).scalars())
    new = [event for uuid, event in fresh.items() if uuid not in known]
    if new:
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        connection.execute(dialect.insert(table).on_conflict_do_nothing(), [_row(branch, event, now) for event in new])
        for event in new:
            _act_on(connection, branch, event, now)
    return len(new), len(batch) - len(new)


def _row(branch: str, event: Event, now: datetime) -> dict:
    return {
        "uuid": event.uuid, "branch_id": branch, "seq": event.seq, "ts": event.ts, "door": event.door, "type": event.type,
        "reason": event.reason, "mode": event.mode, "card_key": event.card_key,
        "detail": json.dumps(event.detail, ensure_ascii=False) if event.detail is not None else None, "received": now,
    }


def _act_on(connection: Connection, branch: str, event: Event, now: datetime) -> None:
    """A no-show frees the rest of the booking, so someone else can use the booth."""
    if event.type == NO_SHOW and event.detail and isinstance(event.detail.get("reservation"), str):
        bookings.free_rest(connection, branch, event.detail["reservation"], event.ts, now)
