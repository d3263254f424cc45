"""Bearer tokens for the API that the central office and a Prometheus server call.

A token is random text shown once, when ``omaovi token add`` makes it; only its
SHA-256 is stored, so a copy of the database lets nobody call the API. A
presented token is hashed and compared with every active hash in constant time,
never looked up by hash in SQL: how long the check takes says nothing about how
close a guess came. Revoking keeps the row, so ``omaovi token list`` still shows
when a revoked token was last used.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from device.events import parse_utc, utc_text
from device.store import Store

#: ``last_used_at`` is rewritten at most this often, so API calls stay read-only.
TOUCH_INTERVAL = timedelta(seconds=60)

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class TokenError(ValueError):
    """A token request that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class Token:
    name: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _time(text: str | None) -> datetime | None:
    return parse_utc(text) if text else None


def add(store: Store, name: str) -> str:
    """Make a token called ``name`` and return its text, the only time it is seen.

    A revoked token's name may be used again: that is how a token is rotated
    under the name the central office knows. An active one's may not.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise TokenError(f"{name!r}: a token name is 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit")
    token = secrets.token_urlsafe(32)
    with store.conn:
        row = store.conn.execute("SELECT revoked_at FROM api_tokens WHERE name = ?", (name,)).fetchone()
        if row is not None and row[0] is None:
            raise TokenError(f"there is already an active token {name!r}; revoke it first or choose another name")
        store.conn.execute(
            "INSERT OR REPLACE INTO api_tokens (name, token_hash, created_at) VALUES (?, ?, ?)",
            (name, _hash(token), utc_text(_now())),
        )
    return token


def revoke(store: Store, name: str) -> None:
    with store.conn:
        row = store.conn.execute("SELECT revoked_at FROM api_tokens WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise TokenError(f"there is no token {name!r}; 'omaovi token list' shows the names")
        if row[0] is not None:
            raise TokenError(f"the token {name!r} was already revoked")
        store.conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE name = ?", (utc_text(_now()), name))


def tokens(store: Store) -> list[Token]:
    return [
        Token(r["name"], parse_utc(r["created_at"]), _time(r["revoked_at"]), _time(r["last_used_at"]))
        for r in store.db.query("SELECT name, created_at, revoked_at, last_used_at FROM api_tokens ORDER BY name")
    ]


def authenticate(store: Store, presented: str) -> str | None:
    """The name of the active token ``presented`` is, or None; notes when it was used."""
    digest = _hash(presented)
    found = None
    rows = store.conn.execute("SELECT name, token_hash, last_used_at FROM api_tokens WHERE revoked_at IS NULL").fetchall()
    for name, stored, last_used in rows:
        # Every row is compared, so the time taken does not depend on which one matched.
        if hmac.compare_digest(stored, digest):
            found = (name, last_used)
    if found is None:
        return None
    name, last_used = found
    now = _now()
    if last_used is None or now - parse_utc(last_used) > TOUCH_INTERVAL:
        with store.conn:
            store.conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE name = ?", (utc_text(now), name))
    return name
