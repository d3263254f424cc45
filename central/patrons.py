"""Writing card permissions centrally, so that every change reaches the branches.

A write that changes nothing (the nightly import of an unchanged patron) appends no
log row, so the branches' change rounds stay small.
"""

from __future__ import annotations

from datetime import datetime
from typing import Collection, Iterable

from sqlalchemy import Connection, delete, func, insert, select, update

from central import changelog, schema
from device.policy import Patron

FIELDS = ("self_service", "blocked_reason", "valid_until", "age_ok_from", "staff", "pin_verifier")


def put(connection: Connection, patrons: Iterable[Patron], now: datetime) -> int:
    """Add or replace cards; returns how many changed."""
    table = schema.patrons
    changed = 0
    for patron in patrons:
        values = {name: getattr(patron, name) for name in FIELDS}
        current = connection.execute(select(*(table.c[name] for name in FIELDS)).where(table.c.card_key == patron.card_key)).first()
        if current is not None and current._asdict() == values:
            continue
        if current is None:
            connection.execute(insert(table).values(card_key=patron.card_key, updated=now, **values))
        else:
            connection.execute(update(table).where(table.c.card_key == patron.card_key).values(updated=now, **values))
        changelog.append(connection, "patrons", now, card_key=patron.card_key)
        changed += 1
    return changed


def remove(connection: Connection, card_keys: Iterable[str], now: datetime) -> int:
    """Take cards away; returns how many were there."""
    table = schema.patrons
    removed = 0
    for key in card_keys:
        if connection.execute(delete(table).where(table.c.card_key == key)).rowcount:
            changelog.append(connection, "patrons", now, card_key=key)
            removed += 1
    return removed


class EmptySource(ValueError):
    """A source with no cards at all would take every card away: an export gone wrong, never a real consortium."""


def replace(connection: Connection, patrons: Collection[Patron], now: datetime) -> tuple[int, int]:
    """Make the cards exactly ``patrons``: returns how many changed and how many were taken away."""
    if not patrons and count(connection):
        raise EmptySource("it has no cards at all, so the central cards were kept")
    keep = {patron.card_key for patron in patrons}
    present = connection.execute(select(schema.patrons.c.card_key)).scalars().all()
    return put(connection, patrons, now), remove(connection, [key for key in present if key not in keep], now)


def count(connection: Connection) -> int:
    return connection.execute(select(func.count()).select_from(schema.patrons)).scalar_one()
