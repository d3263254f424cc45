"""Card readers: each kind of reader, and the loop that turns reads into card numbers.

The reader modules import their hardware libraries (mfrc522, evdev) only when a
reader opens, so this package imports on any machine.
"""

from __future__ import annotations

import sys
from typing import TextIO

from device.config import READER_TYPES, ReaderConfig
from device.readers.base import CardRead, GarbledRead, Reader, ReaderError, ReaderFinished, ReaderLoop
from device.readers.evdev_reader import EvdevReader
from device.readers.mfrc522_reader import Mfrc522Reader
from device.readers.serial_reader import SerialReader
from device.readers.stdin_reader import StdinReader

__all__ = [
    "CardRead", "GarbledRead", "Reader", "ReaderError", "ReaderFinished", "ReaderLoop", "build_reader",
]


def build_reader(cfg: ReaderConfig, *, stdin: TextIO | None = None) -> Reader:
    """The reader for one door's [doors.reader] settings; stdin replaces sys.stdin for type "stdin"."""
    if cfg.type == "mfrc522":
        return Mfrc522Reader(cfg)
    if cfg.type == "serial":
        return SerialReader(cfg)
    if cfg.type == "evdev":
        return EvdevReader(cfg)
    if cfg.type == "stdin":
        return StdinReader(stdin if stdin is not None else sys.stdin)
    raise ValueError(f"unknown reader type {cfg.type!r}; allowed: {', '.join(READER_TYPES)}")
