"""The pages of the patrons and reservations streams: snapshots, then changes.

A snapshot is read in key order, one page per request, and remembers the log head
at its start; its last page hands over a changes cursor at that head. A card that
changed while the snapshot was being read may appear in it old or new, and comes
again in the first changes round, so nothing is lost between the two (the protocol's
"consistent view" is the log head, not a long-running transaction).

A snapshot holds no tombstones and no cancelled or ended bookings: it is the current
state. Changes carry deletions (``"deleted": true``) and cancellations.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from central import changelog, cursors, schema
from central.cursors import Cursor


def patrons_page(connection: Connection, key: bytes, branch: str, cursor_text: str | None, size: int) -> dict:
    cursor = _start(connection, key, "patrons", branch, cursor_text)
    patrons = schema.patrons
    if cursor.in_snapshot:
        rows = connection.execute(
            select(patrons).where(patrons.c.card_key > cursor.after).order_by(patrons.c.card_key).limit(size + 1)
        ).all()
        return _snapshot_page(key, cursor, [patron_json(row) for row in rows[:size]], len(rows) > size, "card_key")
    log = schema.patron_log
    rows = connection.execute(
        select(log.c.seq, log.c.mark, log.c.card_key, patrons)
        .select_from(log.outerjoin(patrons, patrons.c.card_key == log.c.card_key))
        .where(log.c.seq > cursor.seq).order_by(log.c.seq).limit(size + 1)
    ).all()
    items = [patron_json(row) if row.self_service is not None else {"card_key": row.card_key, "deleted": True} for row in rows[:size]]
    return _changes_page(key, cursor, rows[:size], _latest_only(items, "card_key"), len(rows) > size)


def reservations_page(connection: Connection, key: bytes, branch: str, cursor_text: str | None, size: int, now: datetime) -> dict:
    cursor = _start(connection, key, "reservations", branch, cursor_text)
    bookings = schema.reservations
    if cursor.in_snapshot:
        rows = connection.execute(
            select(bookings).where(
                bookings.c.branch_id == branch, bookings.c.state == "confirmed", bookings.c.end > now, bookings.c.id > cursor.after,
            ).order_by(bookings.c.id).limit(size + 1)
        ).all()
        return _snapshot_page(key, cursor, [reservation_json(row) for row in rows[:size]], len(rows) > size, "id")
    log = schema.reservation_log
    rows = connection.execute(
        select(log.c.seq, log.c.mark, bookings)
        .select_from(log.join(bookings, bookings.c.id == log.c.reservation_id))
        .where(log.c.branch_id == branch, log.c.seq > cursor.seq).order_by(log.c.seq).limit(size + 1)
    ).all()
    items = [reservation_json(row) for row in rows[:size]]
    return _changes_page(key, cursor, rows[:size], _latest_only(items, "id"), len(rows) > size)


def patron_json(row) -> dict:
    return {
        "card_key": row.card_key,
        "self_service": row.self_service,
        "blocked_reason": row.blocked_reason,
        "valid_until": row.valid_until.isoformat() if row.valid_until else None,
        "age_ok_from": row.age_ok_from.isoformat() if row.age_ok_from else None,
        "staff": row.staff,
        "pin_verifier": row.pin_verifier,
    }


def reservation_json(row) -> dict:
    return {
        "id": row.id,
        "resource": row.resource,
        "card_key": row.card_key,
        "begin": _utc(row.begin),
        "end": _utc(row.end),
        "state": row.state,
    }


def _start(connection: Connection, key: bytes, stream: str, branch: str, cursor_text: str | None) -> Cursor:
    """The cursor to continue from: a new snapshot at the log head, or the branch's checked cursor."""
    if cursor_text is None:
        head = changelog.head(connection, stream)
        return Cursor(stream, branch, head.seq, head.mark, after="")
    cursor = cursors.decode(cursor_text, key, stream=stream, branch=branch)
    changelog.check(connection, stream, cursor.seq, cursor.mark)
    return cursor


def _snapshot_page(key: bytes, cursor: Cursor, items: list[dict], more: bool, order_key: str) -> dict:
    after = items[-1][order_key] if more else None
    following = Cursor(cursor.stream, cursor.branch, cursor.seq, cursor.mark, after)
    return {"items": items, "cursor": cursors.encode(following, key), "more": more}


def _changes_page(key: bytes, cursor: Cursor, rows: list, items: list[dict], more: bool) -> dict:
    if rows:
        cursor = Cursor(cursor.stream, cursor.branch, rows[-1].seq, rows[-1].mark)
    return {"items": items, "cursor": cursors.encode(cursor, key), "more": more}


def _latest_only(items: list[dict], key: str) -> list[dict]:
    """One entry per card or booking (each already shows its current state), at its last change."""
    last = {item[key]: position for position, item in enumerate(items)}
    return [item for position, item in enumerate(items) if last[item[key]] == position]


def _utc(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
