"""Log to the systemd journal with searchable fields: DOOR=, EVENT_TYPE=, REASON=.

Under systemd plain stderr already reaches the journal, but only as text. Sent
through journald's native protocol, each record also carries fields, so an
administrator can ask ``journalctl -u omaovi-device DOOR=entrance REASON=blocked``
instead of grepping messages. The controller passes the fields as
``extra={"door": ..., "event_type": ..., "reason": ...}`` on its log calls.

The protocol is one datagram to ``/run/systemd/journal/socket`` holding
``KEY=value`` lines; a value containing a newline (a traceback) is sent as
``KEY``, a newline, its length as 64-bit little-endian and the raw bytes. That
is little enough code that python-systemd (a C extension) is not needed.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import traceback
from typing import Mapping

JOURNAL_SOCKET = "/run/systemd/journal/socket"

#: Record attributes given with ``extra=`` and the journal field each becomes.
FIELDS = {"door": "DOOR", "event_type": "EVENT_TYPE", "reason": "REASON"}

#: Larger datagrams would need journald's memfd variant; a log message this long
#: is a bug elsewhere, so it is cut rather than lost.
MAX_MESSAGE_BYTES = 60_000

#: syslog priorities, which journalctl -p filters on.
_PRIORITY = [(logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6)]


def stderr_is_journal(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """True when ``fd`` is the journal stream systemd connected, as ``$JOURNAL_STREAM`` says.

    The variable alone is not enough: a child started from a service inherits it
    with its output redirected elsewhere. systemd.exec(5) says to compare the
    device and inode numbers it holds with those of the descriptor.
    """
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        stat = os.fstat(fd)
    except (ValueError, OSError):
        return False
    return (stat.st_dev, stat.st_ino) == (device, inode)


def _priority(levelno: int) -> int:
    for level, priority in _PRIORITY:
        if levelno >= level:
            return priority
    return 7  # debug


def _field(name: str, value: object) -> bytes:
    data = str(value).encode("utf-8", "replace")
    if b"\n" in data:
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


class JournalHandler(logging.Handler):
    """A logging handler that sends each record as one journal entry with fields.

    If the journal socket cannot be written, the formatted line goes to stderr,
    which under systemd is the journal's stream too: a message may lose its
    fields, never itself.
    """

    def __init__(self, identifier: str = "omaovi", address: str = JOURNAL_SOCKET, level: int = logging.NOTSET):
        super().__init__(level)
        self.identifier = identifier
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def entry(self, record: logging.LogRecord) -> bytes:
        """The datagram for one record."""
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        encoded = message.encode("utf-8", "replace")
        if len(encoded) > MAX_MESSAGE_BYTES:
            message = encoded[:MAX_MESSAGE_BYTES].decode("utf-8", "ignore") + " …(cut)"
        fields = {
            "MESSAGE": message,
            "PRIORITY": _priority(record.levelno),
            "SYSLOG_IDENTIFIER": self.identifier,
            "LOGGER": record.name,
            "CODE_FILE": record.pathname,
            "CODE_LINE": record.lineno,
            "CODE_FUNC": record.funcName,
        }
        for attribute, name in FIELDS.items():
            value = getattr(record, attribute, None)
            if value is not None:
                fields[name] = value
        return b"".join(_field(name, value) for name, value in fields.items())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = self.entry(record)
        except Exception:  # noqa: BLE001 — a bad log call must not take the door down
            self.handleError(record)
            return
        try:
            self.sock.sendto(data, self.address)
        except OSError:
            sys.stderr.write(f"{record.levelname} {record.name}: {record.getMessage()}\n")

    def close(self) -> None:
        self.sock.close()
        super().close()


def configure_logging(level: int, fmt: str, identifier: str = "omaovi") -> None:
    """Log to the journal with fields when stderr is the journal, else text to stderr.

    identifier should match the unit's SyslogIdentifier= (omaovi-device, …), so
    ``journalctl -t omaovi-device`` finds the entries sent here and those written
    to stderr alike.
    """
    if stderr_is_journal():
        logging.basicConfig(level=level, handlers=[JournalHandler(identifier)])
    else:
        logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
