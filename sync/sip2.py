"""A small, strict SIP2 client that asks the library system about a card at tap time.

SIP2 (3M Standard Interchange Protocol 2.00) is how Finnish door units ask Koha and
other library systems whether a patron may come in. This client speaks only what a
door needs: login (93/94) and patron information (63/64), with error detection
(sequence number ``AY`` and checksum ``AZ``) always on.

It is strict on purpose. A reply with a wrong checksum, the wrong sequence number, a
missing terminator or a field value that does not fit the configured profile is an
error, never a guess: a misread reply could open the door for a blocked patron. TLS,
when configured, verifies the server by default and never falls back to plain text.

Privacy: a reply carries the patron's name, address, e-mail, phone and birth date.
Those values are never decoded. Only the derived permission (``Sip2Result``) leaves
this module, and error messages name a personal field by its code, never its value.
The card number (``AA``) is never logged.

``Sip2Checker`` is what the device uses: the client behind a circuit breaker, whose
``check()`` answers ``None`` ("no answer, decide from the cache") at once during an
outage instead of after a timeout on every tap.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

from device.config import (
    CARD_NUMBER_FORMS, DEFAULT_BLOCKING_STATUS, STATUS_BITS,
)
from sync.breaker import BreakerOpen, CircuitBreaker

log = logging.getLogger(__name__)

#: A reply longer than this without a CR is not SIP2; stop reading instead of filling memory.
MAX_FRAME = 64 * 1024
#: How often a ``96`` (please resend) reply is honoured for one request.
MAX_RESENDS = 2

#: The blocked reason besides the status bit names.
BRANCH_BLOCK = "branch_block"

#: Fields this client reads from a 64 reply; any other field is skipped undecoded.
_READ_FIELDS = frozenset({"AA", "BL", "CQ", "PA", "PC"})
_TRAILER = re.compile(rb"AY([0-9])AZ([0-9A-Fa-f]{4})")
_STATUS = re.compile(r"[Y ]{14}")
_ANY_STATUS = re.compile(r"[ -~]{14}")
_FIELD_CODE = re.compile(rb"[A-Z][A-Z0-9]")
_RESEND_CHECKSUM = re.compile(rb"[0-9A-Fa-f]{4}")
#: Exactly YYYYMMDD: strptime alone would read "2099123" as 2099-12-03.
_EXPIRY = re.compile(r"[0-9]{8}")


class Sip2Error(Exception):
    """The library system gave no usable answer. The message never carries personal data."""


class Sip2Timeout(Sip2Error, TimeoutError):
    """No answer within the configured time; the circuit breaker opens on the first one."""


class Sip2LoginRefused(Sip2Error):
    """The server answered the login with "no": the account, not the network, is wrong."""


class _Dropped(Sip2Error):
    """The server closed the connection; on a reused connection that is worth one retry."""


@dataclass(frozen=True)
class Profile:
    """What a server's extension fields mean. They differ between servers, so it is configured.

    ``branch_block_field`` holds ``0``/``1`` (1: blocked at this branch) and must be
    in every valid patron's reply: it is the profile's reason to exist, so a reply
    without it means the profile is wrong. ``expiry_field`` holds the card's expiry
    date as ``YYYYMMDD`` and is optional (a patron without an expiry date has none).
    ``lenient_status``: a status position that is not ``Y`` counts as not set,
    for servers that write ``N`` there.
    """

    name: str
    system: str
    branch_block_field: str | None = None
    expiry_field: str | None = None
    class_field: str = "PC"
    lenient_status: bool = False


PROFILES = {
    "koha": Profile("koha", "stock Koha (C4/SIP): no PA; an expired or debarred patron has charge privileges denied"),
    "koha-suomi": Profile("koha-suomi", "Koha-Suomi's Koha: PA is the branch block, 0 or 1",
                          branch_block_field="PA"),
    "evergreen": Profile("evergreen", "Evergreen's SIPServer and Envisionware: PA is the expiry date YYYYMMDD",
                         expiry_field="PA"),
    "lenient": Profile("lenient", "any other SIP2 server: standard fields only, a status position other than Y is not set",
                       lenient_status=True),
}



@dataclass(frozen=True)
class Sip2Result:
    """What the library system says about a card, reduced to what the door may know."""

    self_service: bool
    blocked_reason: str | None
    valid_until: date | None
    staff: bool = False
    #: True/False when a PIN was sent and checked (``CQ``); None when no PIN was sent
    #: or the server did not say.
    pin_ok: bool | None = None
    #: False when the library system has no such patron (``BL`` is ``N``).
    known: bool = True
    #: The patron's class (``PC``) is not in ``allowed_classes``, or the reply has none.
    class_refused: bool = False


@dataclass(frozen=True, kw_only=True)
class Sip2Config:
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    institution: str
    profile: str
    location: str = ""
    terminal_password: str = field(default="", repr=False)
    tls: bool = False
    tls_verify: bool = True
    tls_ca_file: str | None = None
    #: Seconds for one whole check: connecting, logging in and the patron query together.
    timeout: float = 1.5
    #: Patron classes (``PC``) allowed self-service; empty means the class is not checked.
    allowed_classes: tuple[str, ...] = ()
    #: Status bits (names from ``STATUS_BITS``) that block the patron.
    blocking_status: tuple[str, ...] = DEFAULT_BLOCKING_STATUS
    breaker_failures: int = 3
    breaker_cooldown: float = 30.0
    #: How the card number is written in ``AA`` (``CARD_NUMBER_FORMS``).
    card_number_form: str = "as_read"

    def __post_init__(self):
        if self.card_number_form not in CARD_NUMBER_FORMS:
            raise ValueError(
                f"unknown card_number_form {self.card_number_form!r}; allowed: {', '.join(CARD_NUMBER_FORMS)}"
            )
        if self.profile not in PROFILES:
            raise ValueError(f"unknown SIP2 profile {self.profile!r}; allowed: {', '.join(PROFILES)}")
        unknown = [s for s in self.blocking_status if s not in STATUS_BITS]
        if unknown:
            raise ValueError(f"unknown blocking_status {', '.join(unknown)}; allowed: {', '.join(STATUS_BITS)}")
        if not 0 < self.timeout <= 30:
            raise ValueError(f"timeout must be more than 0 and at most 30 seconds, got {self.timeout}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1-65535, got {self.port}")


# -- framing ---------------------------------------------------------------------

def checksum(data: bytes) -> str:
    """The SIP2 checksum: the 16-bit two's complement of the byte sum, as 4 hex digits."""
    return "%04X" % (-sum(data) & 0xFFFF)


def frame(body: str, sequence: int) -> bytes:
    """A request with its ``AY``/``AZ`` trailer and CR."""
    prefix = f"{body}AY{sequence}AZ".encode("utf-8")
    return prefix + checksum(prefix).encode("ascii") + b"\r"


def _field(code: str, value: str) -> str:
    if "|" in value or "\r" in value:
        raise Sip2Error(f"field {code}: the value contains '|' or a CR, which SIP2 cannot carry")
    return f"{code}{value}|"


def _is_resend(reply: bytes) -> bool:
    """A ``96`` asks for the last request again; its checksum, if any, must be right too."""
    if reply == b"96":
        return True
    if reply.startswith(b"96AZ") and len(reply) == 8:
        if not _RESEND_CHECKSUM.fullmatch(reply[4:]) or int(reply[4:], 16) != int(checksum(reply[:4]), 16):
            raise Sip2Error("wrong checksum on a 96 (resend) reply")
        return True
    return False


def unwrap(reply: bytes, sequence: int, command: str) -> bytes:
    """Check a reply's command, sequence number and checksum; return it without the trailer."""
    match = _TRAILER.fullmatch(reply[-9:])
    if match is None:
        raise Sip2Error(f"garbled reply: no AY/AZ error-detection trailer (expected a {command})")
    if int(match.group(2), 16) != int(checksum(reply[:-4]), 16):
        raise Sip2Error(f"wrong checksum on the {command} reply")
    if int(match.group(1)) != sequence:
        raise Sip2Error(f"wrong sequence number on the {command} reply: sent {sequence}, got {match.group(1).decode()}")
    message = reply[:-9]
    if message[:2] != command.encode():
        raise Sip2Error(f"garbled reply: expected a {command}, got something else")
    return message


def _split(message: bytes, fixed: int) -> tuple[str, dict[str, bytes]]:
    """The fixed part (ASCII) and the fields this client reads; other fields stay undecoded."""
    command = message[:2].decode()
    head = message[2 : 2 + fixed]
    rest = message[2 + fixed :]
    try:
        head_text = head.decode("ascii")
    except UnicodeDecodeError:
        raise Sip2Error(f"garbled {command} reply: non-ASCII bytes in the fixed part") from None
    if len(head) < fixed:
        raise Sip2Error(f"garbled {command} reply: shorter than its fixed part")
    if rest and not rest.endswith(b"|"):
        raise Sip2Error(f"garbled {command} reply: a field is not terminated by '|'")
    fields: dict[str, bytes] = {}
    for piece in rest[:-1].split(b"|") if rest else ():
        if not _FIELD_CODE.fullmatch(piece[:2]):
            raise Sip2Error(f"garbled {command} reply: a field without a field code")
        code = piece[:2].decode("ascii")
        if code in _READ_FIELDS:
            if code in fields:
                raise Sip2Error(f"field {code} appears twice in the {command} reply")
            fields[code] = piece[2:]
    return head_text, fields


def _text(fields: dict[str, bytes], code: str) -> str | None:
    """A field this client reads, as ASCII text; personal fields never come through here."""
    raw = fields.get(code)
    if raw is None:
        return None
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise Sip2Error(f"field {code}: non-ASCII value") from None


def _flag(fields: dict[str, bytes], code: str, values: dict[str, bool]) -> bool:
    value = _text(fields, code)
    if value is None:
        raise Sip2Error(f"field {code} is missing from the reply")
    if value not in values:
        raise Sip2Error(f"field {code}: {value[:20]!r} is not one of {', '.join(values)}")
    return values[value]


def sip2_card_number(number: str, form: str) -> str:
    """The card number as this library system looks it up (``CARD_NUMBER_FORMS``)."""
    if form == "upper":
        return number.upper()
    if form == "lower":
        return number.lower()
    if form == "strip_leading_zeros":
        return number.lstrip("0") or "0"
    return number


def interpret(
    message: bytes, card_number: str, pin_sent: bool, config: Sip2Config, notes: list[str] | None = None
) -> Sip2Result:
    """Turn a checked 64 reply into a permission, by the configured profile.

    ``notes``, when given, gets one line per field saying how the profile read it
    (for ``omaovi doctor --sip2-card``); no line holds a personal value.
    """
    profile = PROFILES[config.profile]
    note = notes.append if notes is not None else (lambda line: None)
    status, fields = _split(message, 14 + 3 + 18 + 6 * 4)
    if not (_ANY_STATUS if profile.lenient_status else _STATUS).fullmatch(status[:14]):
        raise Sip2Error(f"patron status: {status[:14]!r} is not 14 characters 'Y' or ' '")
    echoed = fields.get("AA")
    # Koha answers with the id as its database holds it, which may differ in case.
    if echoed is None or echoed.upper() != card_number.upper().encode("utf-8"):
        raise Sip2Error("the reply is about another card (field AA)")
    pin_ok = None
    if pin_sent:
        pin_ok = _flag(fields, "CQ", {"Y": True, "N": False}) if "CQ" in fields else None
        note(f"CQ: {'missing, the PIN cannot be checked here' if pin_ok is None else ('PIN right' if pin_ok else 'PIN wrong')}")
    if not _flag(fields, "BL", {"Y": True, "N": False}):
        # No such patron: Koha and Evergreen send no CQ then, and nothing else is known.
        note("BL: N, the library system has no such patron (unknown_card)")
        return Sip2Result(self_service=False, blocked_reason=None, valid_until=None, pin_ok=False if pin_sent else None,
                          known=False)
    note("BL: Y, a patron")

    set_bits = [name for name, bit in zip(STATUS_BITS, status[:14], strict=True) if bit == "Y"]
    blocked = next((name for name in set_bits if name in config.blocking_status), None)
    note(f"status: {', '.join(set_bits) or 'nothing set'}; "
         + (f"{blocked} blocks" if blocked else f"none of {', '.join(config.blocking_status)} set, no block"))
    if profile.branch_block_field:
        branch_blocked = _flag(fields, profile.branch_block_field, {"0": False, "1": True})
        note(f"{profile.branch_block_field}: branch block {'1, blocked here' if branch_blocked else '0, not blocked'}")
        if branch_blocked:
            blocked = blocked or BRANCH_BLOCK
    valid_until = _expiry(fields, profile, note)
    class_refused = False
    if config.allowed_classes:
        patron_class = _text(fields, profile.class_field)
        class_refused = patron_class not in config.allowed_classes
        note(f"{profile.class_field}: " + (
            "missing, so the class cannot be checked: refused" if patron_class is None
            else f"{patron_class[:40]!r} {'not ' if class_refused else ''}in allowed_classes"))
    else:
        note(f"{profile.class_field}: not checked (allowed_classes is empty)")
    result = Sip2Result(
        self_service=blocked is None and not class_refused, blocked_reason=blocked, valid_until=valid_until,
        pin_ok=pin_ok, class_refused=class_refused,
    )
    note("result: " + ("allowed" if result.self_service else "refused: " + (blocked or "patron class")))
    return result


def _expiry(fields: dict[str, bytes], profile: Profile, note: Callable[[str], None]) -> date | None:
    if not profile.expiry_field:
        return None
    value = _text(fields, profile.expiry_field)
    if value is None:
        note(f"{profile.expiry_field}: missing, no expiry date")
        return None
    try:
        if not _EXPIRY.fullmatch(value):
            raise ValueError
        valid_until = datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise Sip2Error(
            f"field {profile.expiry_field}: {value[:20]!r} is not an expiry date YYYYMMDD (profile {profile.name})"
        ) from None
    note(f"{profile.expiry_field}: expiry date {valid_until.isoformat()}")
    return valid_until


# -- the connection -----------------------------------------------------------------

def make_ssl_context(config: Sip2Config) -> ssl.SSLContext:
    """Verify the server's certificate and name unless ``tls_verify`` is off."""
    context = ssl.create_default_context(cafile=config.tls_ca_file)
    if not config.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Sip2Client:
    """One persistent SIP2 connection, opened and logged in on first use and after any error.

    After an error the connection is closed, since a late reply could otherwise be
    read as the answer to the next request. Each call has one deadline for all its
    steps, so a tap never waits longer than ``config.timeout``.
    """

    def __init__(self, config: Sip2Config, *, ssl_context: ssl.SSLContext | None = None):
        self.config = config
        self._ssl = (ssl_context or make_ssl_context(config)) if config.tls else None
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._sequence = -1
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._buffer = b""

    def patron_information(
        self, card_number: str, pin: str | None = None, notes: list[str] | None = None
    ) -> Sip2Result:
        """Ask about one card (and PIN, if given). Raises ``Sip2Error`` when there is no usable answer.

        ``card_number`` is sent as the reader read it, in the configured ``card_number_form``.
        """
        deadline = time.monotonic() + self.config.timeout
        if not self._lock.acquire(timeout=self.config.timeout):
            raise Sip2Timeout("another SIP2 check held the connection for the whole timeout")
        sent = sip2_card_number(card_number, self.config.card_number_form)
        try:
            request = self._patron_request(sent, pin)
            message = self._with_connection(lambda: self._exchange(request, "64", deadline), deadline)
        finally:
            self._lock.release()
        return interpret(message, sent, pin is not None, self.config, notes)

    def _with_connection(self, exchange: Callable[[], bytes], deadline: float) -> bytes:
        reused = self._sock is not None
        try:
            if not reused:
                self._connect(deadline)
            try:
                return exchange()
            except _Dropped:
                if not reused:
                    raise
                # The server closed an idle connection (Koha does); one fresh try.
                log.info("SIP2 server closed the connection; reconnecting")
                self.close()
                self._connect(deadline)
                return exchange()
        except BaseException:
            self.close()
            raise

    def _patron_request(self, card_number: str, pin: str | None) -> str:
        if not card_number:
            raise Sip2Error("field AA: empty card number")
        now = datetime.now().strftime("%Y%m%d    %H%M%S")
        body = "63000" + now + " " * 10 + _field("AO", self.config.institution) + _field("AA", card_number)
        body += _field("AC", self.config.terminal_password)
        if pin is not None:
            body += _field("AD", pin)
        return body

    def login(self) -> None:
        """Connect and log in once, within ``config.timeout``; for ``omaovi doctor``."""
        with self._lock:
            try:
                self._connect(time.monotonic() + self.config.timeout)
            finally:
                self.close()

    def _connect(self, deadline: float) -> None:
        where = f"{self.config.host}:{self.config.port}"
        try:
            sock = socket.create_connection((self.config.host, self.config.port), timeout=self._remaining(deadline))
        except TimeoutError:
            raise Sip2Timeout(f"connecting to {where} timed out") from None
        except OSError as exc:
            raise Sip2Error(f"cannot connect to {where}: {exc.strerror or type(exc).__name__}") from None
        if self._ssl is not None:
            try:
                sock.settimeout(self._remaining(deadline))
                sock = self._ssl.wrap_socket(sock, server_hostname=self.config.host)
            except TimeoutError:
                sock.close()
                raise Sip2Timeout(f"TLS handshake with {where} timed out") from None
            except OSError as exc:
                sock.close()
                raise Sip2Error(f"TLS handshake with {where} failed: {exc}") from None
        self._sock, self._buffer = sock, b""
        login = "9300" + _field("CN", self.config.username) + _field("CO", self.config.password)
        login += _field("CP", self.config.location)
        reply = self._exchange(login, "94", deadline)
        if reply[2:] == b"0":
            raise Sip2LoginRefused(f"SIP2 login to {where} refused (check username and password)")
        if reply[2:] != b"1":
            raise Sip2Error("garbled 94 reply: the ok flag is not 0 or 1")
        log.info("SIP2 logged in to %s", where)

    def _exchange(self, body: str, command: str, deadline: float) -> bytes:
        self._sequence = (self._sequence + 1) % 10
        request = frame(body, self._sequence)
        self._send(request, deadline)
        for resends in range(MAX_RESENDS + 1):
            reply = self._read_frame(deadline)
            if not _is_resend(reply):
                return unwrap(reply, self._sequence, command)
            if resends == MAX_RESENDS:
                break
            self._send(request, deadline)
        raise Sip2Error(f"the server asked for the {body[:2]} request again (96) more than {MAX_RESENDS} times")

    def _remaining(self, deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Sip2Timeout(f"no answer within {self.config.timeout} s")
        return remaining

    def _send(self, data: bytes, deadline: float) -> None:
        assert self._sock is not None
        try:
            self._sock.settimeout(self._remaining(deadline))
            self._sock.sendall(data)
        except TimeoutError:
            raise Sip2Timeout(f"sending timed out after {self.config.timeout} s") from None
        except (BrokenPipeError, ConnectionResetError):
            raise _Dropped("the server closed the connection") from None
        except OSError as exc:
            raise Sip2Error(f"sending failed: {type(exc).__name__}") from None

    def _read_frame(self, deadline: float) -> bytes:
        """One reply up to its CR; a stray LF some servers send after the CR is dropped."""
        assert self._sock is not None
        while True:
            end = self._buffer.find(b"\r")
            if end >= 0:
                reply, self._buffer = self._buffer[:end].lstrip(b"\n"), self._buffer[end + 1 :]
                if len(reply) > MAX_FRAME:
                    break
                return reply
            if len(self._buffer) > MAX_FRAME:
                break
            try:
                self._sock.settimeout(self._remaining(deadline))
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise Sip2Timeout(f"no answer within {self.config.timeout} s") from None
            except (ConnectionResetError, ssl.SSLEOFError):
                chunk = b""
            except OSError as exc:
                raise Sip2Error(f"reading failed: {type(exc).__name__}") from None
            if not chunk:
                raise _Dropped("the server closed the connection")
            self._buffer += chunk
        raise Sip2Error(f"garbled reply: longer than {MAX_FRAME} bytes without a CR")


class Sip2Checker:
    """The SIP2 check for the device: the client behind a circuit breaker.

    ``check()`` returns a ``Sip2Result``, or None when there is no answer (error,
    timeout, or the breaker is open during an outage): decide from the cache then.
    ``state()`` is what the device itself last met, for doctor, the staff page and
    monitoring: a login that works from a shell proves nothing about the device.
    """

    def __init__(
        self,
        config: Sip2Config,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.client = Sip2Client(config, ssl_context=ssl_context)
        self.breaker = CircuitBreaker(
            config.breaker_failures, config.breaker_cooldown, clock=clock, name="SIP2 library system"
        )
        self._wall = wall
        self._last_success: datetime | None = None
        self._last_error: tuple[datetime, str] | None = None

    def check(self, card_number: str, pin: str | None = None) -> Sip2Result | None:
        try:
            result = self.breaker.call(self.client.patron_information, card_number, pin)
        except BreakerOpen:
            return None
        except Sip2Error as exc:
            # The client's messages name fields and hosts, never a card number or a personal value.
            self._last_error = (self._wall(), str(exc))
            log.warning("SIP2 check failed, deciding from the cache: %s", exc)
            return None
        self._last_success = self._wall()
        return result

    def state(self) -> dict:
        """The breaker, and when the last check succeeded and failed (aware datetimes or None), with why."""
        error_at, error = self._last_error or (None, None)
        return {
            "breaker": self.breaker.state, "last_success": self._last_success,
            "last_error": error, "last_error_at": error_at,
        }

    def close(self) -> None:
        self.client.close()
