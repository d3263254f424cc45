"""Staff users, their web sessions and the login throttle, kept in the shared database.

Passwords are stored as Werkzeug hashes (scrypt), never as text. A web session is
a random id held by the browser; only its SHA-256 is stored, so a copy of the
database does not let anyone in, and deleting the row ends the session at once
(logout, a disabled user, a password reset). The throttle counts failed logins
per address and per username in the database, so it holds across restarts,
worker threads and worker processes.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from werkzeug.security import check_password_hash, generate_password_hash

from device.events import parse_utc, utc_text
from device.store import Store

ROLES = ("staff", "admin")
LANGUAGES = ("fi", "sv", "en")
MIN_PASSWORD_LENGTH = 10
#: Failed logins from one address, or for one username, within the window before it must wait.
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
#: A session's last_seen is rewritten at most this often, to keep page loads read-only.
TOUCH_INTERVAL = timedelta(seconds=60)

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
#: Password hashes made or checked at once in one web process. Each scrypt hash
#: takes 32 MiB while it runs: with 2 processes of 4 threads, 12 logins at once
#: (with a made-up username, so no throttle or account stops them) took the staff
#: page past its unit's MemoryMax=256M and it was killed. One at a time per
#: process keeps that to 32 MiB each; a hash takes a fraction of a second, so
#: staff logging in do not notice the wait.
HASHES_AT_ONCE = 1
#: How long a password check waits for its turn before it is answered "busy" (429).
HASH_WAIT_SECONDS = 3.0
_hashing = threading.BoundedSemaphore(HASHES_AT_ONCE)
# A hash of a random password, made once when the module is loaded (before the web
# workers fork) and checked when the username does not exist, so that a wrong
# username takes as long as a wrong password, and waits for its turn like one:
# the timing does not reveal which users exist.
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))


class Busy(RuntimeError):
    """Other password checks are running and this one did not get its turn in time."""


class AccountError(ValueError):
    """A request about users that cannot be carried out; the message says why, in English.

    ``code`` names the problem for the staff page, which shows it translated.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class User:
    username: str
    role: str
    language: str | None
    disabled: bool
    created_at: datetime

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _user(row) -> User:
    return User(row["username"], row["role"], row["language"], bool(row["disabled"]), parse_utc(row["created_at"]))


def check_username(username: str) -> str:
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise AccountError(
            "bad_username", f"{username!r}: a username is 2-32 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return username


def check_password(password: str, username: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError("short_password", f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")
    if password.strip().lower() == username.lower():
        raise AccountError("password_is_username", "the password must not be the username")
    return password


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AccountError("bad_role", f"{role!r}: the role must be one of {', '.join(ROLES)}")


@contextmanager
def _hash_turn():
    if not _hashing.acquire(timeout=HASH_WAIT_SECONDS):
        raise Busy(f"more than {HASHES_AT_ONCE} password check(s) at once; try again in a moment")
    try:
        yield
    finally:
        _hashing.release()


def _hash_password(password: str) -> str:
    with _hash_turn():
        return generate_password_hash(password)


def _password_matches(password_hash: str, password: str) -> bool:
    with _hash_turn():
        return check_password_hash(password_hash, password)


def new_password() -> str:
    """A password for a reset, easy to read aloud to a colleague and type on a tablet."""
    return "-".join(secrets.token_hex(3) for _ in range(3))


def users(store: Store) -> list[User]:
    return [_user(r) for r in store.db.query("SELECT * FROM users ORDER BY username")]


def has_users(store: Store) -> bool:
    return store.conn.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None


def get_user(store: Store, username: str) -> User | None:
    row = next(iter(store.db.query("SELECT * FROM users WHERE username = ?", [username])), None)
    return _user(row) if row else None


def add_user(store: Store, username: str, password: str, role: str) -> User:
    check_username(username)
    _check_role(role)
    check_password(password, username)
    now = utc_text(_now())
    try:
        with store.conn:
            store.conn.execute(
                "INSERT INTO users (username, password_hash, role, created_at, password_changed_at) VALUES (?, ?, ?, ?, ?)",
                (username, _hash_password(password), role, now, now),
            )
    except sqlite3.IntegrityError:
        raise AccountError("user_exists", f"there is already a user {username!r}") from None
    return get_user(store, username)


def set_password(store: Store, username: str, password: str) -> None:
    """Change a password and end every session of that user (a reset means "someone else may know it")."""
    check_password(password, username)
    with store.conn:
        changed = store.conn.execute(
            "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE username = ?",
            (_hash_password(password), utc_text(_now()), username),
        ).rowcount
        if not changed:
            raise AccountError("no_such_user", f"there is no user {username!r}")
        store.conn.execute("DELETE FROM web_sessions WHERE username = ?", (username,))


def set_disabled(store: Store, username: str, disabled: bool) -> None:
    """Disable or enable a user; disabling also ends the user's sessions at once.

    The last enabled admin cannot be disabled, or nobody could manage users from
    the staff page any more.
    """
    with store.conn:
        store.lock_for_writing()
        user = _existing_user(store, username)
        if disabled:
            _keep_an_admin(store, user, AccountError("last_admin", "the last admin cannot be disabled"))
        store.conn.execute("UPDATE users SET disabled = ? WHERE username = ?", (int(disabled), username))
        if disabled:
            store.conn.execute("DELETE FROM web_sessions WHERE username = ?", (username,))


def set_role(store: Store, username: str, role: str) -> None:
    """Change a user's role; the last enabled admin stays an admin, for the same reason as above."""
    _check_role(role)
    with store.conn:
        store.lock_for_writing()
        user = _existing_user(store, username)
        if role != "admin":
            _keep_an_admin(store, user, AccountError("last_admin_role", "the last admin must stay an admin"))
        store.conn.execute("UPDATE users SET role = ? WHERE username = ?", (role, username))


def _existing_user(store: Store, username: str) -> User:
    user = get_user(store, username)
    if user is None:
        raise AccountError("no_such_user", f"there is no user {username!r}")
    return user


def _keep_an_admin(store: Store, user: User, refusal: AccountError) -> None:
    """Raise ``refusal`` if taking ``user`` away would leave no enabled admin.

    Called with the write lock held (``Store.lock_for_writing``) until the change is
    written: otherwise two admins taking each other away at the same moment could
    both count two admins and both succeed, leaving none.
    """
    if user.is_admin and not user.disabled:
        admins = store.conn.execute("SELECT count(*) FROM users WHERE role = 'admin' AND disabled = 0").fetchone()[0]
        if admins <= 1:
            raise refusal


def set_language(store: Store, username: str, language: str | None) -> None:
    if language is not None and language not in LANGUAGES:
        raise AccountError("bad_language", f"{language!r}: the language must be one of {', '.join(LANGUAGES)}")
    with store.conn:
        store.conn.execute("UPDATE users SET language = ? WHERE username = ?", (language, username))


def authenticate(store: Store, username: str, password: str) -> User | None:
    """The user if the password is right and the user is enabled, else None.

    Raises Busy when other checks kept this one waiting too long.
    """
    row = next(iter(store.db.query("SELECT * FROM users WHERE username = ?", [username])), None)
    if row is None:
        _password_matches(_DUMMY_HASH, password)
        return None
    if not _password_matches(row["password_hash"], password) or row["disabled"]:
        return None
    return _user(row)


# -- sessions -------------------------------------------------------------------
def _hash(text: str) -> str:
    """What is kept of a session id or a username typed at the login page."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def start_session(store: Store, username: str) -> str:
    """A new random session id for the browser. A fresh id at every login defeats session fixation."""
    session_id = secrets.token_urlsafe(32)
    now = utc_text(_now())
    with store.conn:
        store.conn.execute(
            "INSERT INTO web_sessions (id_hash, username, created_at, last_seen) VALUES (?, ?, ?, ?)",
            (_hash(session_id), username, now, now),
        )
    return session_id


def session_user(store: Store, session_id: str, *, idle: timedelta, max_age: timedelta) -> User | None:
    """The enabled user of a live session, or None (and the session is gone) when it has expired."""
    now = _now()
    row = next(
        iter(store.db.query(
            "SELECT s.created_at, s.last_seen, u.* FROM web_sessions s JOIN users u USING (username) WHERE s.id_hash = ?",
            [_hash(session_id)],
        )),
        None,
    )
    if row is None:
        return None
    created, last_seen = parse_utc(row["created_at"]), parse_utc(row["last_seen"])
    if row["disabled"] or now - last_seen > idle or now - created > max_age:
        end_session(store, session_id)
        return None
    if now - last_seen > TOUCH_INTERVAL:
        with store.conn:
            store.conn.execute("UPDATE web_sessions SET last_seen = ? WHERE id_hash = ?", (utc_text(now), _hash(session_id)))
    return _user(row)


def end_session(store: Store, session_id: str) -> None:
    with store.conn:
        store.conn.execute("DELETE FROM web_sessions WHERE id_hash = ?", (_hash(session_id),))


# -- login throttle -------------------------------------------------------------
def begin_attempt(store: Store, address: str, username: str) -> timedelta | None:
    """Count a login attempt as failed before its password is checked, or say how long to wait.

    Failures are counted per address and per username typed: one address may not
    try many names, and many addresses may not try one name. The name is kept as
    its SHA-256 only, since people type their password in the username field.
    The check and the count are one transaction that holds the write lock, so
    parallel guesses cannot all pass the check before any is counted;
    ``attempt_succeeded`` takes the count back for a right password. Returns None
    when the attempt may go ahead.
    """
    now, target = _now(), _hash(username)
    with store.conn:
        store.lock_for_writing()
        # Stamps in the future are from before the clock was stepped back: they
        # count from now, or an address would wait out the step (hours, a day).
        store.conn.execute("UPDATE login_failures SET ts = ? WHERE ts > ?", (utc_text(now), utc_text(now)))
        store.conn.execute("DELETE FROM login_failures WHERE ts <= ?", (utc_text(now - FAILURE_WINDOW),))
        waits = [_wait(store, column, value, now) for column, value in (("address", address), ("username_hash", target))]
        wait = max((w for w in waits if w is not None), default=None)
        if wait is None:
            store.conn.execute(
                "INSERT INTO login_failures (address, username_hash, ts) VALUES (?, ?, ?)", (address, target, utc_text(now))
            )
    return wait


def _wait(store: Store, column: str, value: str, now: datetime) -> timedelta | None:
    """How long until fewer than MAX_FAILURES of this address's or username's failures are in the window."""
    rows = store.conn.execute(f"SELECT ts FROM login_failures WHERE {column} = ? ORDER BY ts", (value,)).fetchall()
    if len(rows) < MAX_FAILURES:
        return None
    oldest_that_counts = parse_utc(rows[len(rows) - MAX_FAILURES][0])
    return oldest_that_counts + FAILURE_WINDOW - now


def attempt_succeeded(store: Store, username: str) -> None:
    """A right password clears that username's failures only, from every address.

    Another user's success from the same address clears nothing: a staff member
    may not reset their count against the admin by logging in as themself.
    """
    with store.conn:
        store.conn.execute("DELETE FROM login_failures WHERE username_hash = ?", (_hash(username),))
