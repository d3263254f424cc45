"""Card numbers typed on standard input, one per line, for trying the device on a desk."""

from __future__ import annotations

import queue
import threading
from typing import TextIO

from device.readers.base import READ_TIMEOUT, CardRead, ReaderFinished


class StdinReader:
    """Reads one card number per line from a text stream.

    A text stream cannot be read with a timeout, so a helper thread reads the lines
    and read() waits on them for at most READ_TIMEOUT. At the end of input read()
    raises ReaderFinished, which ends the ReaderLoop instead of reopening.
    """

    name = "stdin"

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._lines: queue.Queue[str | ReaderFinished] = queue.Queue()
        self._feeder: threading.Thread | None = None
        self._finished: ReaderFinished | None = None

    def open(self) -> None:
        # The stream can be read only once, so a reopen keeps the running helper.
        if self._feeder is None:
            self._feeder = threading.Thread(target=self._feed, name="stdin reader", daemon=True)
            self._feeder.start()

    def read(self) -> CardRead | None:
        if self._finished is not None:
            raise self._finished
        try:
            line = self._lines.get(timeout=READ_TIMEOUT)
        except queue.Empty:
            return None
        if isinstance(line, ReaderFinished):
            self._finished = line
            raise line
        text = line.strip()
        return CardRead(text=text) if text else None

    def close(self) -> None:
        """Leaves the stream open: standard input belongs to the whole process."""

    def _feed(self) -> None:
        try:
            for line in self._stream:
                self._lines.put(line)
        except (OSError, ValueError) as exc:
            self._lines.put(ReaderFinished(f"cannot read input: {exc}"))
        else:
            self._lines.put(ReaderFinished("end of input"))
