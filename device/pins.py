"""PINs: how a cached verifier is kept and checked, and when a card is locked out.

The consortium cannot send a PIN, and the branch must not keep one. What it can
produce is what most web frameworks already write for passwords: Django's
``pbkdf2_sha256$<iterations>$<salt>$<base64 hash>`` (Python, Java, PHP and .NET
all have PBKDF2-HMAC-SHA256 in their standard libraries). On arrival the branch
replaces the hash with ``HMAC-SHA256(branch pepper, hash)``: a copy of the
database alone (a backup, a dump sent to support) then cannot be tried against
the 10 000 four-digit PINs, because the pepper lives in a file outside it.

The decisions here are pure, so the lockout rule is tested as a table.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

ALGORITHM = "pbkdf2_sha256"
#: What the branch stores: the consortium's verifier with its hash peppered.
STORED_PREFIX = "omaovi1"
#: Fewer rounds make a leaked verifier cheap to try; more make a Raspberry Pi 3
#: keep a patron waiting for seconds.
MIN_ITERATIONS = 10_000
MAX_ITERATIONS = 1_000_000
MIN_PEPPER_BYTES = 16


class VerifierError(ValueError):
    """A verifier that is not ``pbkdf2_sha256$<iterations>$<salt>$<base64 hash>``."""


def load_pepper(path: Path) -> bytes:
    """The branch pepper: the file's bytes, white space around them ignored. OSError when unreadable."""
    pepper = Path(path).read_bytes().strip()
    if len(pepper) < MIN_PEPPER_BYTES:
        raise ValueError(f"the PIN pepper in {path} is {len(pepper)} bytes; it must be at least {MIN_PEPPER_BYTES}")
    return pepper


def _parts(verifier: str, algorithm: str) -> tuple[int, str, bytes]:
    pieces = verifier.split("$") if isinstance(verifier, str) else []
    if len(pieces) != 4 or pieces[0] != algorithm:
        raise VerifierError(f"expected {algorithm}$<iterations>$<salt>$<base64 hash>")
    _, rounds, salt, digest = pieces
    if not rounds.isdigit() or not MIN_ITERATIONS <= int(rounds) <= MAX_ITERATIONS:
        raise VerifierError(f"iterations must be a whole number from {MIN_ITERATIONS} to {MAX_ITERATIONS}")
    if not salt or not salt.isascii():
        raise VerifierError("the salt must be non-empty ASCII text")
    try:
        raw = base64.b64decode(digest, validate=True)
    except binascii.Error:
        raise VerifierError("the hash must be base64") from None
    if len(raw) != 32:
        raise VerifierError("the hash must be 32 bytes, PBKDF2-HMAC-SHA256's own length")
    return int(rounds), salt, raw


def pepper_verifier(verifier: str, pepper: bytes) -> str:
    """The consortium's verifier as this branch stores it; VerifierError if it is malformed."""
    rounds, salt, raw = _parts(verifier, ALGORITHM)
    peppered = hmac.new(pepper, raw, hashlib.sha256).digest()
    return f"{STORED_PREFIX}${rounds}${salt}${base64.b64encode(peppered).decode()}"


def check_verifier(verifier: str) -> str:
    """The consortium's verifier unchanged, as the central service keeps it to send on; VerifierError if malformed."""
    _parts(verifier, ALGORITHM)
    return verifier


def make_verifier(pin: str, salt: str, iterations: int = 100_000) -> str:
    """What the consortium sends for ``pin`` (also for tests, the demo and the docs' example)."""
    raw = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt.encode(), iterations)
    return f"{ALGORITHM}${iterations}${salt}${base64.b64encode(raw).decode()}"


def remember_pin(pin: str, pepper: bytes, iterations: int = 100_000) -> str:
    """A stored verifier for a PIN the library system just accepted, with a fresh salt,
    so the same card and PIN work during its outage. Slow on purpose (PBKDF2)."""
    return pepper_verifier(make_verifier(pin, secrets.token_hex(8), iterations), pepper)


def pin_matches(pin: str, stored: str, pepper: bytes) -> bool:
    """Whether ``pin`` is the one behind a stored verifier. Slow on purpose (PBKDF2)."""
    rounds, salt, peppered = _parts(stored, STORED_PREFIX)
    raw = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt.encode(), rounds)
    return hmac.compare_digest(hmac.new(pepper, raw, hashlib.sha256).digest(), peppered)


# -- lockout ------------------------------------------------------------------------

@dataclass(frozen=True)
class LockoutRule:
    max_wrong: int = 5
    window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=30)

    @property
    def lookback(self) -> timedelta:
        """How far back a wrong PIN can still matter to a lockout now."""
        return self.window + self.lockout


def locked_until(failures: list[datetime], now: datetime, rule: LockoutRule) -> datetime | None:
    """When a card's PIN lockout ends, or None if it is not locked out now.

    ``max_wrong`` wrong PINs within ``window`` lock the card for ``lockout`` from
    the last of them. Wrong PINs are counted from the event log, so a restart does
    not give an attacker a fresh set of tries.
    """
    times = sorted(failures)
    ends = [
        times[i + rule.max_wrong - 1] + rule.lockout
        for i in range(len(times) - rule.max_wrong + 1)
        if times[i + rule.max_wrong - 1] - times[i] <= rule.window
    ]
    until = max(ends, default=None)
    return until if until is not None and until > now else None


# -- one PIN being typed ------------------------------------------------------------

@dataclass
class PinEntry:
    """The keys typed so far for one tap, and what to do with the next one.

    Only in memory, for one tap: the digits are never logged or stored.
    """

    length: int
    enter_key: str
    reset_key: str
    digits: list[str] = field(default_factory=list, repr=False)

    def press(self, key: str) -> str | None:
        """The finished PIN when this key completes it (and the entry forgets it), else None."""
        if key == self.reset_key:
            self.digits.clear()
        elif key.isdigit():
            self.digits.append(key)
        if key == self.enter_key or len(self.digits) == self.length:
            pin = "".join(self.digits)
            self.digits.clear()
            return pin
        return None
