"""The opaque cursors of the patrons and reservations streams.

A branch stores a cursor and sends it back next round; the service must be able to
tell, from the cursor alone and its own log, whether it can continue from there.
Each cursor therefore carries

- the stream and branch it was issued for;
- a log position ``seq`` and the random ``mark`` of the log row at that position: a
  database restored from a backup writes *other* rows (other marks) at positions the
  branch has already seen, so an old cursor is recognised even once new changes have
  moved the log past it;
- for a snapshot in progress, the last key it returned;
- an HMAC over all of it with this database's own key, so a garbled, tampered or
  foreign cursor is recognised without being interpreted.

Every cursor that fails any of these checks is answered ``410 Gone`` (never 400): the
branch then drops it and takes a full snapshot, which always repairs the situation,
whereas a 400 would make it ask with the same cursor forever.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

#: The protocol's bound; the service never issues a longer cursor.
MAX_LENGTH = 2000
#: The position of an empty log: nothing has been seen yet.
START = 0
_VERSION = "1"
_SIGNATURE_BYTES = 12


class CursorGone(ValueError):
    """A cursor this service cannot continue from; the branch must take a full snapshot."""


@dataclass(frozen=True)
class Cursor:
    stream: str
    branch: str
    #: The last log position the branch has (or, for a snapshot, will have) seen.
    seq: int
    #: The mark of the log row at ``seq`` (empty for START).
    mark: str
    #: None for a changes cursor; for a snapshot page, the last key already sent ("" before the first).
    after: str | None = None

    @property
    def in_snapshot(self) -> bool:
        return self.after is not None


def encode(cursor: Cursor, key: bytes) -> str:
    fields = [_VERSION, cursor.stream, cursor.branch, str(cursor.seq), cursor.mark]
    if cursor.after is not None:
        fields.append(cursor.after)
    payload = "\n".join(fields).encode()
    text = _b64(payload) + "." + _b64(_sign(payload, key))
    assert len(text) <= MAX_LENGTH, "keys and ids are bounded well below this"
    return text


def decode(text: str, key: bytes, *, stream: str, branch: str) -> Cursor:
    """The cursor, or CursorGone for anything this service did not issue for this stream and branch."""
    if len(text) > MAX_LENGTH or text.count(".") != 1:
        raise CursorGone("not a cursor of this service")
    body, signature = text.split(".")
    try:
        payload, given = _unb64(body), _unb64(signature)
    except ValueError:
        raise CursorGone("not a cursor of this service") from None
    if not hmac.compare_digest(given, _sign(payload, key)):
        raise CursorGone("not a cursor of this service (or of this database)")
    fields = payload.decode().split("\n")
    if fields[0] != _VERSION or fields[1:3] != [stream, branch]:
        raise CursorGone(f"a cursor for another stream or branch, not {stream} of {branch}")
    after = fields[5] if len(fields) == 6 else None
    return Cursor(stream, branch, int(fields[3]), fields[4], after)


def _sign(payload: bytes, key: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("empty or not ASCII")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
