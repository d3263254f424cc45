"""What every card reader hands over, and the loop that keeps one reader running.

A door controller runs unattended for months. Readers get unplugged, lose power,
pick up noise and see the same card many times a second, so the rest of the system
never talks to a reader directly: a ReaderLoop owns it, turns each read into a card
number (separators stripped, letters in the case read; see device/cards.py), drops
repeats and reopens the device when it comes back.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol

from device.cards import UID_FORMATS, CardNumberError, clean, uid_to_number

log = logging.getLogger("omaovi.readers")

#: How long one Reader.read() may block. Short enough that stop() is prompt,
#: long enough that an idle reader costs next to no CPU.
READ_TIMEOUT = 0.2

#: A reader that hands back "nothing yet" faster than this is not blocking as it
#: should; the loop waits out the rest so that it can never spin a CPU core.
MIN_IDLE_READ = 0.05

#: A loose wire or a noisy line can produce bad frames many times a second; one
#: warning per interval (with a count of the rest) keeps the journal readable.
#: Every dropped read is also logged at debug level and counted (``dropped_reads``).
GARBLED_LOG_INTERVAL = 60.0


@dataclass(frozen=True)
class CardRead:
    """What a reader produced: chip UID bytes, or a number the reader typed or printed."""

    uid: bytes | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        if (self.uid is None) == (self.text is None):
            raise ValueError("a CardRead has exactly one of uid and text")


class ReaderError(Exception):
    """The device is missing or went away. The message says what to check or do."""


class GarbledRead(Exception):
    """Something arrived that cannot be a card. It is logged and never counts as a card.

    The message describes the problem without the full content, because the
    content may be most of a real card number.
    """


class ReaderFinished(Exception):
    """The reader has no more cards and never will (end of input).

    Distinct from ReaderError so the loop ends instead of reopening: reopening an
    exhausted stdin would only spin.
    """


class Reader(Protocol):
    name: str

    def open(self) -> None:
        """Raise ReaderError (or OSError) if the device is missing."""

    def read(self) -> CardRead | None:
        """Block at most about READ_TIMEOUT; None means nothing yet.

        Raises GarbledRead for a bad frame, ReaderError or OSError when the device
        went away, ReaderFinished when the input has ended for good.
        """

    def close(self) -> None:
        """Release the device; safe to call when it is not open."""


def take_pending(pending: deque[CardRead | GarbledRead]) -> CardRead | None:
    """Hand out the oldest result a chunk of input produced.

    One chunk from a device can hold several cards and bad frames; readers queue
    them and return (or raise) one per read() call.
    """
    if not pending:
        return None
    result = pending.popleft()
    if isinstance(result, GarbledRead):
        raise result
    return result


def _failure_reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class ReaderLoop:
    """Runs one reader in its own daemon thread: open, read, canonicalise, de-duplicate, reconnect.

    on_card receives each new card number, without separators and in the case it
    was read (the card key normalises it). on_status receives (True, "ok") when
    the reader opens and (False, reason) once per outage, so a display or health
    check can say which door has no reader.
    """

    def __init__(
        self,
        reader: Reader,
        on_card: Callable[[str], None],
        *,
        uid_format: str = "hex",
        dedupe_seconds: float = 3.0,
        on_status: Callable[[bool, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        reconnect_delays: tuple[float, ...] = (0.5, 1, 2, 3),
    ):
        if uid_format not in UID_FORMATS:
            raise ValueError(f"unknown uid_format {uid_format!r}; allowed: {', '.join(UID_FORMATS)}")
        if not reconnect_delays:
            raise ValueError("reconnect_delays needs at least one delay")
        self._reader = reader
        self._on_card = on_card
        self._uid_format = uid_format
        self._dedupe_seconds = dedupe_seconds
        self._on_status = on_status
        self._clock = clock
        self._delays = tuple(reconnect_delays)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._online = False
        self._ever_online = False
        self._outage_reported = False
        # Repeats are recognised by a keyed digest, so the raw number of the last
        # card does not stay in memory after its tap has been handled.
        self._dedupe_key = os.urandom(16)
        self._last_card: bytes | None = None
        self._last_seen = 0.0
        self._garbled_quiet_until: float | None = None
        self._garbled_suppressed = 0
        self._dropped_reads = 0

    @property
    def online(self) -> bool:
        return self._online

    @property
    def dropped_reads(self) -> int:
        """Reads dropped as not a card since the loop started (for /metrics)."""
        return self._dropped_reads

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("a ReaderLoop can be started only once")
        self._thread = threading.Thread(target=self._run, name=f"reader {self._reader.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop reading and close the reader; safe to call from on_card or on_status."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("reader %s did not stop within %.1f s", self._reader.name, timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the loop has ended (stopped, or its reader finished); True if it has."""
        if self._thread is None:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    self._reader.open()
                    failures = 0
                    self._came_online()
                    self._read_until_stopped()
                except ReaderFinished as exc:
                    log.info("reader %s finished: %s", self._reader.name, exc)
                    self._online = False
                    self._notify(False, f"finished: {exc}")
                    return
                except Exception as exc:  # noqa: BLE001 - an unattended door must not lose its reader thread to a bug
                    self._went_offline(exc)
                    self._close_reader()
                    self._stopping.wait(self._delays[min(failures, len(self._delays) - 1)])
                    failures += 1
        finally:
            self._online = False
            self._close_reader()

    def _read_until_stopped(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()  # real time, not the injected clock: this guards the CPU
            try:
                read = self._reader.read()
            except GarbledRead as exc:
                self._report_garbled(str(exc))
                continue
            if read is None:
                rest = MIN_IDLE_READ - (time.monotonic() - started)
                if rest > 0:
                    self._stopping.wait(rest)
                continue
            self._handle(read)

    def _handle(self, read: CardRead) -> None:
        try:
            if read.uid is not None:
                number = uid_to_number(read.uid, self._uid_format)
            else:
                # As read: the card key normalises it, the SIP2 check sends it as the library system knows it.
                number = clean(read.text)
        except CardNumberError:
            # The error message holds the raw read; only its size is logged.
            what = f"UID of {len(read.uid)} bytes" if read.uid is not None else f"text of {len(read.text)} characters"
            self._report_garbled(f"{what} is not a card number")
            return
        if self._is_repeat(number):
            log.debug("reader %s: the same card again, ignored", self._reader.name)
            return
        try:
            self._on_card(number)
        except Exception:
            log.exception("reader %s: handling a card failed", self._reader.name)

    def _is_repeat(self, number: str) -> bool:
        """True if this card was also seen less than dedupe_seconds ago.

        The window runs from the latest sighting, so a card resting on an RFID
        reader (re-read several times a second) counts once until it is taken away.
        """
        now = self._clock()
        card = hmac.digest(self._dedupe_key, number.upper().encode(), "sha256")
        repeat = card == self._last_card and now - self._last_seen < self._dedupe_seconds
        self._last_card, self._last_seen = card, now
        return repeat

    def _came_online(self) -> None:
        self._online = True
        self._outage_reported = False
        log.info("reader %s %s", self._reader.name, "reconnected" if self._ever_online else "opened")
        self._ever_online = True
        self._notify(True, "ok")

    def _went_offline(self, exc: Exception) -> None:
        reason = _failure_reason(exc)
        if self._outage_reported:
            log.debug("reader %s still unavailable: %s", self._reader.name, reason)
            return
        if not isinstance(exc, (ReaderError, OSError)):
            log.error("reader %s failed: %s", self._reader.name, reason, exc_info=exc)
        elif self._online:
            log.warning("reader %s disconnected: %s", self._reader.name, reason)
        else:
            log.warning("reader %s not available: %s", self._reader.name, reason)
        self._online = False
        self._outage_reported = True
        self._notify(False, reason)

    def _report_garbled(self, what: str) -> None:
        self._dropped_reads += 1
        log.debug("reader %s: dropped a read that is not a card: %s", self._reader.name, what)
        now = self._clock()
        if self._garbled_quiet_until is not None and now < self._garbled_quiet_until:
            self._garbled_suppressed += 1
            return
        more = f" ({self._garbled_suppressed} more since the last report)" if self._garbled_suppressed else ""
        log.warning("reader %s: ignored a read that is not a card: %s%s", self._reader.name, what, more)
        self._garbled_suppressed = 0
        self._garbled_quiet_until = now + GARBLED_LOG_INTERVAL

    def _notify(self, online: bool, reason: str) -> None:
        if self._on_status is None:
            return
        try:
            self._on_status(online, reason)
        except Exception:
            log.exception("reader %s: reporting its status failed", self._reader.name)

    def _close_reader(self) -> None:
        try:
            self._reader.close()
        except Exception as exc:  # noqa: BLE001 - closing a device that is already gone may fail in any way
            log.debug("reader %s: closing failed: %s", self._reader.name, exc)
