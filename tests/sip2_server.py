"""A SIP2 server for the tests, so the client is checked against an independent implementation.

Requests are decoded and replies encoded with pysip2 (its codec verifies the
client's checksums on its own). pysip2's models have no room for the extension
fields (``PA``, ``PC``, ``PB``) that Finnish servers send, so those are added to
the encoded reply here before the ``AY``/``AZ`` trailer, using pysip2's checksum.
The server is plain sockets and threads so that each test can make it misbehave
on purpose: one-shot ``faults`` change the next patron reply.

``shape="koha"`` or ``shape="evergreen"`` builds the patron reply field by field
as those systems' SIP servers do (Koha's ``C4/SIP/Sip/MsgType.pm`` and
``C4/SIP/ILS/Patron.pm``, Evergreen's ``Sip/MsgType.pm`` and
``OpenILS/SIP/Patron.pm``): their field order, the fields they leave out (Koha
sends no ``PA``; neither sends ``CQ`` for an unknown card) and the card number
echoed as the database holds it.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field

import pysip2

#: Personal values every test patron carries, so tests can look for leaks.
PERSONAL = {
    "AE": "Maija Meikäläinen",
    "BD": "Kotikatu 1 A 2, 00100 Helsinki",
    "BE": "maija.meikalainen@example.fi",
    "BF": "+358401234567",
    "PB": "19800101",
}

@dataclass
class FakePatron:
    status: str = " " * 14
    valid: str = "Y"
    pin: str = "1234"
    #: Extension fields as the server's profile writes them, e.g. {"PA": "0", "PC": "AIKUINEN"}.
    extra: dict[str, str] = field(default_factory=dict)
    #: The card number as the library system's database holds it (Koha and Evergreen
    #: echo this in AA); None: as asked.
    stored_as: str | None = None


class Sip2Peer:
    def __init__(
        self,
        patrons: dict[str, FakePatron],
        *,
        username: str = "ovi",
        password: str = "salasana-123",
        ssl_context: ssl.SSLContext | None = None,
        shape: str = "pysip2",
        case_insensitive: bool = False,
    ):
        self.patrons = patrons
        self.shape = shape
        #: Look card numbers up without regard to case, as Koha's MySQL collation does.
        self.case_insensitive = case_insensitive
        self.username = username
        self.password = password
        self.ssl_context = ssl_context
        #: One-shot faults, each used up by the next patron request: "garble" (a cut-off
        #: reply), "bad_checksum", "bad_sequence", "resend" (answer 96), "slow" (no answer
        #: until the server stops), "late" (answer after half a second), "drop" (hang up),
        #: "flood" (70 KiB without a CR), or None (answer normally).
        self.faults: list[str | None] = []
        #: Every request frame the server decoded, and every byte it received at all
        #: (after decryption, on a TLS connection).
        self.requests: list[pysip2.SIPMessage] = []
        self.raw = bytearray()
        #: The TLS version of each TLS connection, to show the bytes really were encrypted.
        self.tls_versions: list[str] = []
        self.connections = 0
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._listener.close()
        self.drop_connections()
        for thread in self._threads:
            thread.join(timeout=5)

    def drop_connections(self) -> None:
        """Close every open connection, as a library system does to idle clients."""
        with self._lock:
            for conn in self._open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._open.clear()

    def patron_requests(self) -> int:
        return sum(isinstance(r, pysip2.PatronInformationRequest) for r in self.requests)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.ssl_context is not None:
                conn.settimeout(5)
                conn = self.ssl_context.wrap_socket(conn, server_side=True)
                self.tls_versions.append(conn.version())
            conn.settimeout(None)
            with self._lock:
                self._open.append(conn)
            buffer = b""
            while not self._stop.is_set():
                chunk = conn.recv(4096)
                if not chunk:
                    return
                self.raw += chunk
                buffer += chunk
                while b"\r" in buffer:
                    request, buffer = buffer.split(b"\r", 1)
                    reply = self._answer(request + b"\r")
                    if reply is None:
                        return
                    conn.sendall(reply)
        except OSError:
            return
        finally:
            conn.close()

    def _answer(self, frame: bytes) -> bytes | None:
        try:
            decoded = pysip2.decode_message(frame, encoding="utf-8")
        except pysip2.SIP2Error:
            return None  # not SIP2 (e.g. a TLS handshake on a plain port): hang up
        self.requests.append(decoded.message)
        sequence = decoded.sequence_number
        message = decoded.message
        if isinstance(message, pysip2.LoginRequest):
            ok = message.login_user_id == self.username and message.login_password == self.password
            return pysip2.encode_message(
                pysip2.LoginResponse(ok="1" if ok else "0"), sequence_number=sequence, checksum=True, encoding="utf-8"
            )
        if isinstance(message, pysip2.PatronInformationRequest):
            fault = self.faults.pop(0) if self.faults else None
            if fault == "resend":
                return pysip2.encode_message(pysip2.RequestSCResend(), checksum=True)
            if fault == "slow":
                self._stop.wait(10)
            if fault == "late":
                self._stop.wait(0.5)
            if fault == "drop":
                return None
            if fault == "flood":
                return b"64" + b"Y" * 70_000
            reply = self._patron_reply(message, sequence, fault)
            if fault == "garble":
                reply = reply[:40] + b"\r"
            return reply
        return None

    def _find(self, identifier: str) -> FakePatron | None:
        if not self.case_insensitive:
            return self.patrons.get(identifier)
        return next((p for number, p in self.patrons.items() if number.upper() == identifier.upper()), None)

    def _patron_reply(self, request: pysip2.PatronInformationRequest, sequence: int, fault: str | None) -> bytes:
        patron = self._find(request.patron_identifier)
        if self.shape != "pysip2":
            body = _SHAPES[self.shape](request, patron)
            return _trailer(body.encode("utf-8"), sequence, fault)
        known = patron is not None
        patron = patron or FakePatron(valid="N")
        password = request.patron_password
        pin_ok = None if password is None else ("Y" if password == patron.pin else "N")
        response = pysip2.PatronInformationResponse(
            patron_status=patron.status,
            language="000",
            transaction_date="20261123    120000",
            hold_items_count="0000",
            overdue_items_count="0000",
            charged_items_count="0000",
            fine_items_count="0000",
            recall_items_count="0000",
            unavailable_holds_count="0000",
            institution_id=request.institution_id,
            patron_identifier=request.patron_identifier,
            personal_name=PERSONAL["AE"] if known else "",
            valid_patron=patron.valid,
            valid_patron_password=pin_ok,
            home_address=PERSONAL["BD"] if known else None,
            email_address=PERSONAL["BE"] if known else None,
            home_phone_number=PERSONAL["BF"] if known else None,
            screen_message=("Tervetuloa",),
        )
        body = pysip2.encode_message(response, encoding="utf-8")[:-1]
        extra = dict(patron.extra, PB=PERSONAL["PB"]) if known else {}
        body += "".join(f"{code}{value}|" for code, value in extra.items()).encode("utf-8")
        return _trailer(body, sequence, fault)


def _trailer(body: bytes, sequence: int, fault: str | None) -> bytes:
    if fault == "bad_sequence":
        sequence = (sequence + 1) % 10
    prefix = body + f"AY{sequence}AZ".encode("ascii")
    check = pysip2.calculate_checksum(prefix)
    if fault == "bad_checksum":
        check = "%04X" % ((int(check, 16) + 1) & 0xFFFF)
    return prefix + check.encode("ascii") + b"\r"


_FIXED = "000" + "20261123    120000" + "0000" * 6  # language, transaction date, the six counts
#: An unknown card's status in both systems: no privileges at all.
_NO_PRIVILEGES = "YYYY" + " " * 10


def _maybe(code: str, value: str | None) -> str:
    """Both systems' maybe_add: a field only when it has a value."""
    return f"{code}{value}|" if value else ""


def _koha(request: pysip2.PatronInformationRequest, patron: FakePatron | None) -> str:
    """A 64 as Koha's handle_patron_info builds it."""
    pin = request.patron_password
    if patron is None:
        return (f"64{_NO_PRIVILEGES}{_FIXED}AO{request.institution_id}|AA{request.patron_identifier}|AE|BLN|"
                "AFInvalid cardnumber|")
    cq = "" if pin is None else f"CQ{'Y' if pin == patron.pin else 'N'}|"
    extra = dict(patron.extra)
    category = extra.pop("PC", None)
    return (
        f"64{patron.status}{_FIXED}AO{request.institution_id}|AA{patron.stored_as or request.patron_identifier}|"
        f"AE{PERSONAL['AE']}|BL{patron.valid}|{cq}CC5|BD{PERSONAL['BD']}|BE{PERSONAL['BE']}|BF{PERSONAL['BF']}|"
        f"PB{PERSONAL['PB']}|{_maybe('PC', category)}PIY|"
        + "".join(f"{code}{value}|" for code, value in extra.items())
        + "AFGreetings from Koha. |"
    )


def _evergreen(request: pysip2.PatronInformationRequest, patron: FakePatron | None) -> str:
    """A 64 as Evergreen's handle_patron_info builds it."""
    pin = request.patron_password
    if patron is None:
        return f"64{_NO_PRIVILEGES}{_FIXED}AO{request.institution_id}|AA{request.patron_identifier}|AE|BLN|"
    cq = "" if pin is None else f"CQ{'Y' if pin == patron.pin else 'N'}|"
    return (
        f"64{patron.status}{_FIXED}AO{request.institution_id}|AA{patron.stored_as or request.patron_identifier}|"
        f"AE{PERSONAL['AE']}|BV0.00|BD{PERSONAL['BD']}|BE{PERSONAL['BE']}|BF{PERSONAL['BF']}|AQBR1|"
        f"BL{patron.valid}|{cq}{_maybe('PA', patron.extra.get('PA'))}PB{PERSONAL['PB']}|"
        f"{_maybe('PC', patron.extra.get('PC'))}PI0|"
    )


_SHAPES = {"koha": _koha, "evergreen": _evergreen}
