"""Readers on a serial port: USB readers in serial (CDC) mode and the RDM6300 on the UART."""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

import serial

from device.config import ReaderConfig
from device.readers.base import READ_TIMEOUT, CardRead, GarbledRead, ReaderError, take_pending
from device.readers.framing import IDLE_GAP, LineFramer, Rdm6300Framer

FRAMERS = {"line": LineFramer, "rdm6300": Rdm6300Framer}


class SerialReader:
    """Reads card frames from a serial port or any pyserial URL (such as loop://).

    open_port exists so tests can keep a handle on the port they write into; it
    takes the arguments of serial.serial_for_url.
    """

    def __init__(self, cfg: ReaderConfig, *, open_port: Callable[..., serial.SerialBase] = serial.serial_for_url):
        if cfg.framing not in FRAMERS:
            raise ValueError(f"unknown framing {cfg.framing!r}; allowed: {', '.join(FRAMERS)}")
        self.name = f"serial {cfg.device}"
        self._cfg = cfg
        self._open_port = open_port
        self._port: serial.SerialBase | None = None
        self._framer = FRAMERS[cfg.framing]()
        self._pending: deque[CardRead | GarbledRead] = deque()
        #: When bytes last arrived, while the framer may hold part of a frame.
        self._last_data_at: float | None = None

    def open(self) -> None:
        """Opens the port for this process alone (an exclusive lock, as pyserial takes it).

        Two processes reading one port each get pieces of the frames: a second
        ``omaovi device`` or a terminal program left on the reader would turn one
        card into two wrong numbers. The second one now cannot open it.
        """
        try:
            self._port = self._open_port(self._cfg.device, baudrate=self._cfg.baudrate, timeout=READ_TIMEOUT, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            if "exclusively lock" in str(exc):
                raise ReaderError(
                    f"serial port {self._cfg.device} is in use by another process (another omaovi device, "
                    f"or omaovi doctor while the device runs): {exc}. Find it with: fuser -v {self._cfg.device}"
                ) from exc
            raise ReaderError(
                f"cannot open serial port {self._cfg.device}: {exc}. Check the cable and the device path "
                "(ls -l /dev/serial/by-id/), and that the omaovi user is in the dialout group; for a reader "
                "on the UART pins enable the serial port: sudo raspi-config nonint do_serial_hw 0"
            ) from exc
        # Whatever was half-received before a reconnect is not the start of the next frame.
        self._framer = FRAMERS[self._cfg.framing]()
        self._pending.clear()
        self._last_data_at = None

    def read(self) -> CardRead | None:
        """Keeps reading while a frame is still arriving, up to about READ_TIMEOUT.

        A frame's bytes trickle in (a millisecond each at 9600 baud). Handing back
        "nothing yet" after its first byte would make the ReaderLoop wait out
        MIN_IDLE_READ before reading on: up to 50 ms added to a tap.
        """
        deadline = time.monotonic() + READ_TIMEOUT
        while not self._pending:
            try:
                # Blocks up to READ_TIMEOUT for the first byte, then takes what has arrived.
                data = self._port.read(max(1, self._port.in_waiting))
            except (serial.SerialException, OSError) as exc:
                raise ReaderError(f"serial port {self._cfg.device} stopped working: {exc}") from exc
            now = time.monotonic()
            if self._last_data_at is not None and now - self._last_data_at >= IDLE_GAP:
                # What came before the quiet is not the start of what comes now (see framing.IDLE_GAP).
                self._pending.extend(self._framer.gap())
                self._last_data_at = None
            if not data:
                break
            self._last_data_at = now
            self._pending.extend(self._framer.feed(data))
            if time.monotonic() >= deadline:
                break
        return take_pending(self._pending)

    def close(self) -> None:
        if self._port is not None:
            port, self._port = self._port, None
            port.close()
