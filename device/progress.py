"""How far a long console job has come: a bar on a terminal, plain lines in a log.

``omaovi patrons import`` of a large export runs for a minute or more on a Pi. On
a terminal the bar is redrawn in place; from a timer job the output goes to the
journal, where a redrawn line would be one line per update, so there it is a
plain line at every tenth of the way.
"""

from __future__ import annotations

import time
from typing import TextIO

BAR_WIDTH = 30
#: A terminal's bar is redrawn at most this often.
REDRAW_SECONDS = 0.1
#: Without a terminal, a line at every this much of the way.
LINE_EVERY = 0.1


class ProgressLine:
    def __init__(self, out: TextIO, total_bytes: int | None, *, clock=time.monotonic):
        self.out = out
        self.total = total_bytes
        self.clock = clock
        self.terminal = out.isatty()
        self._last_drawn = float("-inf")
        self._next_share = LINE_EVERY
        self._drawn = False
        self._last_line = self._unwritten = None

    def show(self, progress) -> None:
        """Takes a sync.patrons_csv.Progress (bytes_read, total_bytes, rows)."""
        share = progress.bytes_read / self.total if self.total else None
        if self.terminal:
            now = self.clock()
            if now - self._last_drawn >= REDRAW_SECONDS or share == 1:
                self._last_drawn = now
                self._drawn = True
                self.out.write("\r" + self._bar(share, progress))
                self.out.flush()
        elif share is not None:
            self._unwritten = self._text(share, progress)
            if share >= self._next_share:
                while self._next_share <= share:
                    self._next_share += LINE_EVERY
                self._write_line()

    def _write_line(self) -> None:
        if self._unwritten != self._last_line:
            self.out.write(f"{self._unwritten}\n")
            self.out.flush()
            self._last_line = self._unwritten

    def close(self) -> None:
        """Ends the bar's line, so that what is printed next starts on a line of its own.

        Without a terminal, the last state is written if it is not yet: the last
        block of a file is read before its last rows are counted.
        """
        if self._unwritten is not None:
            self._write_line()
        if self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = False

    def _bar(self, share: float | None, progress) -> str:
        if share is None:
            return f"{progress.rows:,} rows read"
        filled = round(share * BAR_WIDTH)
        return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self._text(share, progress)}"

    def _text(self, share: float, progress) -> str:
        return (f"{share:4.0%} of {self.total / 2**20:.1f} MB read, {progress.rows:,} rows"
                if self.total else f"{progress.rows:,} rows read")
