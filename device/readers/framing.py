"""Turning a serial byte stream into card reads.

Serial data arrives in arbitrary chunks: a frame may be split over several reads,
one read may hold several frames, and a reader that is plugged in mid-frame or sits
on a noisy line sends bytes that belong to no frame. The framers keep their state
between chunks and do no I/O, so every such case is tested without a device.

A stray byte with no frame end (a reader plugged in hot, a spike on the line)
would otherwise stay at the front of the buffer and spoil the next card's frame,
so the reader tells the framer when the line has been quiet for ``IDLE_GAP``
(``gap()``) and the framer drops what it holds.
"""

from __future__ import annotations

from device.readers.base import CardRead, GarbledRead

#: The longest line accepted as a card number; card numbers are at most 64 characters.
MAX_LINE = 64
#: Seconds without a byte after which a frame that has not ended is dropped. A
#: reader sends a whole frame in a few milliseconds (64 characters take 70 ms at
#: 9600 baud), while taking one card away and holding up the next takes a person
#: well over a second, so a partial frame this old is noise, never the next tap's start.
IDLE_GAP = 0.7

_CR, _LF = 0x0D, 0x0A
_STX, _ETX = 0x02, 0x03
#: An RDM6300 frame between STX and ETX: 10 hex characters of data, 2 of checksum.
_RDM6300_CHARS = 12
_HEX_DIGITS = frozenset(b"0123456789ABCDEFabcdef")


def _summary(data: bytes) -> str:
    """Bad input fit for a log: its length and first few bytes, never what may be a whole card number."""
    return f"{len(data)} bytes starting {data[:3].hex(' ')}"


class LineFramer:
    """Lines ended by CR, LF or CRLF, as sent by barcode and RFID readers in serial mode."""

    def __init__(self) -> None:
        self._line = bytearray()
        # After an over-long run the rest of that line is dropped too: its tail is
        # not a card number of its own.
        self._skipping = False

    def feed(self, data: bytes) -> list[CardRead | GarbledRead]:
        results: list[CardRead | GarbledRead] = []
        for byte in data:
            if byte in (_CR, _LF):
                # CRLF is CR followed by an empty line, which is ignored.
                if not self._skipping and self._line:
                    result = self._finish_line()
                    if result is not None:
                        results.append(result)
                self._line.clear()
                self._skipping = False
            elif self._skipping:
                continue
            elif len(self._line) >= MAX_LINE:
                results.append(GarbledRead(f"more than {MAX_LINE} bytes without a line end"))
                self._line.clear()
                self._skipping = True
            else:
                self._line.append(byte)
        return results

    def gap(self) -> list[GarbledRead]:
        """The line went quiet: a line begun before the quiet belongs to no card."""
        line, self._line = self._line, bytearray()
        self._skipping = False
        return [GarbledRead(f"{len(line)} bytes without a line end, dropped after {IDLE_GAP} s of quiet")] if line else []

    def _finish_line(self) -> CardRead | GarbledRead | None:
        text = bytes(self._line).strip()
        if not text:
            return None
        if not all(0x20 <= byte < 0x7F for byte in text):
            return GarbledRead(f"line with non-printable bytes ({_summary(text)})")
        return CardRead(text=text.decode("ascii"))


class Rdm6300Framer:
    """Frames of the 125 kHz RDM6300 module: STX, 10 hex data characters, 2 hex checksum, ETX.

    The data is 5 bytes (a version or customer byte and the 4-byte tag ID); the
    checksum is the XOR of those 5 bytes. A frame yields CardRead(uid=the 5 bytes).
    """

    def __init__(self) -> None:
        #: The characters of the frame being received; None between frames.
        self._frame: bytearray | None = None

    def feed(self, data: bytes) -> list[CardRead | GarbledRead]:
        results: list[CardRead | GarbledRead] = []
        for byte in data:
            if byte == _STX:
                # Always a fresh start, so a frame cut short cannot swallow the next one.
                if self._frame:
                    results.append(GarbledRead(f"frame cut short after {len(self._frame)} of {_RDM6300_CHARS} characters"))
                self._frame = bytearray()
            elif self._frame is None:
                continue
            elif len(self._frame) < _RDM6300_CHARS:
                if byte in _HEX_DIGITS:
                    self._frame.append(byte)
                else:
                    problem = "cut short" if byte == _ETX else f"broken by byte {byte:02x}"
                    results.append(GarbledRead(f"frame {problem} after {len(self._frame)} of {_RDM6300_CHARS} characters"))
                    self._frame = None
            else:
                results.append(self._finish_frame() if byte == _ETX else GarbledRead("frame not ended by ETX"))
                self._frame = None
        return results

    def gap(self) -> list[GarbledRead]:
        """The line went quiet: a frame begun before the quiet will not be finished."""
        frame, self._frame = self._frame, None
        if frame is None:
            return []
        return [GarbledRead(f"frame cut short after {len(frame)} of {_RDM6300_CHARS} characters, dropped after {IDLE_GAP} s of quiet")]

    def _finish_frame(self) -> CardRead | GarbledRead:
        values = bytes.fromhex(self._frame.decode("ascii"))
        uid, checksum = values[:5], values[5]
        expected = 0
        for byte in uid:
            expected ^= byte
        if checksum != expected:
            return GarbledRead("frame checksum does not match")
        return CardRead(uid=uid)
