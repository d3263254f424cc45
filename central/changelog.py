"""The change logs behind the patrons and reservations streams.

Every write to a card or a booking appends a row with a fresh random ``mark``. A
cursor names a row by position and mark (central/cursors.py); ``check`` accepts it
only while that very row is still in the log, which is what makes a cursor from
before a compaction or a restore come back as ``410 Gone``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Table, delete, func, insert, select

from central import schema
from central.cursors import START, CursorGone

LOGS: dict[str, Table] = {"patrons": schema.patron_log, "reservations": schema.reservation_log}


@dataclass(frozen=True)
class Position:
    seq: int
    mark: str


def append(connection: Connection, stream: str, at: datetime, **values) -> Position:
    mark = secrets.token_hex(8)
    seq = connection.execute(insert(LOGS[stream]).values(mark=mark, at=at, **values).returning(LOGS[stream].c.seq)).scalar_one()
    return Position(seq, mark)


def head(connection: Connection, stream: str) -> Position:
    """The newest position: where a snapshot taken now continues from."""
    log = LOGS[stream]
    row = connection.execute(select(log.c.seq, log.c.mark).order_by(log.c.seq.desc()).limit(1)).first()
    return Position(row.seq, row.mark) if row else Position(START, "")


def check(connection: Connection, stream: str, seq: int, mark: str) -> None:
    """CursorGone unless the branch's position is still a row of this log (or the start of a log never compacted)."""
    log = LOGS[stream]
    if seq == START:
        if _oldest(connection, stream) > START:
            raise CursorGone("the change log was compacted past the start")
        return
    found = connection.execute(select(log.c.mark).where(log.c.seq == seq)).scalar_one_or_none()
    if found is None:
        raise CursorGone("the change log no longer holds this position (compacted, or a restored database)")
    if found != mark:
        raise CursorGone("this position holds another change (a restored database)")


def compact(connection: Connection, stream: str, before: datetime) -> int:
    """Forget the changes made before ``before`` (the newest always stays); returns how many went.

    A branch whose cursor pointed into them gets 410 and takes a full snapshot."""
    log = LOGS[stream]
    first_kept = connection.execute(select(func.min(log.c.seq)).where(log.c.at >= before)).scalar_one()
    keep_from = min(first_kept if first_kept is not None else head(connection, stream).seq, head(connection, stream).seq)
    if keep_from <= _oldest(connection, stream):
        return 0
    gone = connection.execute(delete(log).where(log.c.seq < keep_from)).rowcount
    horizon = schema.log_horizon
    updated = connection.execute(horizon.update().where(horizon.c.log == stream).values(oldest_seq=keep_from)).rowcount
    if not updated:
        connection.execute(insert(horizon).values(log=stream, oldest_seq=keep_from))
    return gone


def _oldest(connection: Connection, stream: str) -> int:
    horizon = schema.log_horizon
    return connection.execute(select(func.coalesce(func.max(horizon.c.oldest_seq), START)).where(horizon.c.log == stream)).scalar_one()
