"""PIN keypads: a GPIO matrix keypad or a serial line device, each on its own thread.

A keypad only reports keys (``on_key``); what they mean is the controller's
business, so a broken keypad can cost a PIN but never hold up a door. Keys are
never logged: they are PIN digits.

Matrix wiring: the row pins are driven low one at a time and the column pins are
read with the internal pull-up, so a pressed key pulls its column low while its
row is scanned. Common 3×4 and 4×4 membrane keypads need no other parts.
"""

from __future__ import annotations

import logging
import threading
from contextlib import ExitStack
from typing import Callable

from gpiozero import DigitalInputDevice, OutputDevice

from device.config import KeypadConfig

log = logging.getLogger("omaovi.keypad")

SCAN_SECONDS = 0.02
REOPEN_SECONDS = 1.0
#: What a serial keypad sends for its enter key besides the configured one.
LINE_ENDS = "\r\n"


class MatrixKeypad:
    def __init__(self, cfg: KeypadConfig, on_key: Callable[[str], None], *, pin_factory=None):
        pf = {"pin_factory": pin_factory}
        self._keys = cfg.keys
        with ExitStack() as claimed:  # a pin that cannot be claimed releases those claimed before it
            self._rows = [claimed.enter_context(OutputDevice(p, active_high=False, initial_value=False, **pf))
                          for p in cfg.row_pins]
            self._columns = [claimed.enter_context(DigitalInputDevice(p, pull_up=True, **pf)) for p in cfg.column_pins]
            claimed.pop_all()
        self._on_key = on_key
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._scan, name="keypad matrix", daemon=True)
        self._thread.start()

    def _scan(self) -> None:
        held: set[str] = set()
        while not self._stop.wait(SCAN_SECONDS):
            down = set()
            for r, row in enumerate(self._rows):
                row.on()
                down.update(self._keys[r][c] for c, column in enumerate(self._columns) if column.is_active)
                row.off()
            # A key counts once when it goes down; holding it does not repeat it.
            for key in sorted(down - held):
                self._on_key(key)
            held = down

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        for device in (*self._rows, *self._columns):
            device.close()


class SerialKeypad:
    """Each character the device sends is one key; CR or LF is the enter key."""

    def __init__(self, cfg: KeypadConfig, on_key: Callable[[str], None], *, enter_key: str):
        self._cfg = cfg
        self._on_key = on_key
        self._enter_key = enter_key
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keypad serial", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import serial

        while not self._stop.is_set():
            try:
                # Exclusive, as the card reader's port: a second reader of the port would split the keys.
                port = serial.serial_for_url(self._cfg.device, baudrate=self._cfg.baudrate, timeout=0.2, exclusive=True)
            except (serial.SerialException, OSError, ValueError) as exc:
                log.error("cannot open the keypad %s: %s", self._cfg.device, exc)
                self._stop.wait(REOPEN_SECONDS)
                continue
            try:
                while not self._stop.is_set():
                    for char in port.read(max(1, port.in_waiting)).decode("ascii", "replace"):
                        self._on_key(self._enter_key if char in LINE_ENDS else char)
            except (serial.SerialException, OSError) as exc:
                log.error("keypad %s stopped working: %s", self._cfg.device, exc)
            finally:
                port.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)


def build_keypad(cfg: KeypadConfig, on_key: Callable[[str], None], *, enter_key: str, pin_factory=None):
    if cfg.type == "matrix":
        return MatrixKeypad(cfg, on_key, pin_factory=pin_factory)
    return SerialKeypad(cfg, on_key, enter_key=enter_key)
