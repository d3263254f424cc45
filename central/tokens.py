"""The branches' device tokens: made once, shown once, stored as SHA-256.

A token is 32 random bytes, so a plain hash is enough (there is nothing to guess);
a copy of the database gives no working token. Revoking takes effect at the next
request.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select, update

from central import schema

#: ``last_used`` is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenError(ValueError):
    """A token operation that cannot be done (no such branch or token)."""


def add(connection: Connection, branch: str, name: str, now: datetime) -> str:
    if connection.execute(select(schema.branches.c.id).where(schema.branches.c.id == branch)).first() is None:
        raise TokenError(f"there is no branch {branch!r}; add it first with: omaovi central branch add")
    token = secrets.token_urlsafe(32)
    connection.execute(insert(schema.branch_tokens).values(branch_id=branch, name=name, token_sha256=_hash(token), created=now))
    return token


def revoke(connection: Connection, branch: str, name: str, now: datetime) -> None:
    tokens = schema.branch_tokens
    done = connection.execute(
        update(tokens).where(tokens.c.branch_id == branch, tokens.c.name == name, tokens.c.revoked.is_(None)).values(revoked=now)
    ).rowcount
    if not done:
        raise TokenError(f"branch {branch!r} has no active token named {name!r}")


def listing(connection: Connection) -> list:
    tokens = schema.branch_tokens
    return connection.execute(
        select(tokens.c.branch_id, tokens.c.name, tokens.c.created, tokens.c.last_used, tokens.c.revoked)
        .order_by(tokens.c.branch_id, tokens.c.name)
    ).all()


def active_token(connection: Connection, branch: str, token: str) -> tuple[int, datetime | None] | None:
    """(id, last used) of ``token`` if it is an active token of ``branch``, else None. Only reads."""
    tokens = schema.branch_tokens
    row = connection.execute(
        select(tokens.c.id, tokens.c.last_used).where(
            tokens.c.token_sha256 == _hash(token), tokens.c.branch_id == branch, tokens.c.revoked.is_(None)
        )
    ).first()
    return (row.id, row.last_used) if row is not None else None


def use_is_stale(last_used: datetime | None, now: datetime) -> bool:
    """Whether the token's ``last_used`` is worth writing again: at most once a minute, not at every request."""
    return last_used is None or now - last_used >= LAST_USED_RESOLUTION


def note_use(connection: Connection, token_id: int, now: datetime) -> None:
    connection.execute(update(schema.branch_tokens).where(schema.branch_tokens.c.id == token_id).values(last_used=now))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
