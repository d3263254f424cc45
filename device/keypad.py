"""PIN keypads: a GPIO matrix keypad or a serial line device, each on its own thread.

A keypad only reports keys (``on_key``); what they mean is the controller's
business, so a broken keypad can cost a PIN but never hold up a door. Keys are
never logged: they are PIN digits.

A keypad also reports whether it can be used (``on_status``), at once when it is
made and again at every change: a port missing at start, a cable pulled, the
device back. The controller asks for a PIN only while its keypad works, since a
door that waits for a PIN nobody can type lets nobody in. A keypad that cannot
be opened is tried again every ``REOPEN_SECONDS``.

Matrix wiring: the row pins are driven low one at a time and the column pins are
read with the internal pull-up, so a pressed key pulls its column low while its
row is scanned. Common 3×4 and 4×4 membrane keypads need no other parts.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from contextlib import ExitStack
from typing import Callable

import serial
from gpiozero import DigitalInputDevice, OutputDevice

from device.config import KeypadConfig

SCAN_SECONDS = 0.02
REOPEN_SECONDS = 1.0
#: What a serial keypad sends for its enter key besides the configured one.
LINE_ENDS = "\r\n"

OnStatus = Callable[[bool, str], None]


class Keypad(ABC):
    """A keypad's life: open its device, read keys until it fails, open it again.

    Subclasses say how to open the device (``_open``, returning something with
    ``close()``) and how to read it (``_read``, until ``_stop`` is set or the
    device fails). Any exception counts as the keypad failing: gpiozero and
    pyserial raise many kinds, and an unattended door must not lose its keypad
    thread to one nobody foresaw.
    """

    def __init__(self, what: str, on_key: Callable[[str], None], on_status: OnStatus):
        self.what = what
        self._on_key = on_key
        self._on_status = on_status
        self._works: bool | None = None
        self._stop = threading.Event()
        opened = self._attempt()  # here, not on the thread: the first status is known when the door starts
        self._thread = threading.Thread(target=self._run, args=(opened,), name=f"keypad {what}", daemon=True)
        self._thread.start()

    @abstractmethod
    def _open(self):
        """The opened device; raises when it cannot be opened."""

    @abstractmethod
    def _read(self, opened) -> None:
        """Pass on keys until ``_stop`` is set; raises when the device goes away."""

    def _attempt(self):
        try:
            opened = self._open()
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self._report(False, f"cannot open {self.what}: {type(exc).__name__}: {exc}")
            return None
        self._report(True, f"{self.what} works")
        return opened

    def _run(self, opened) -> None:
        while not self._stop.is_set():
            if opened is None:
                if not self._stop.wait(REOPEN_SECONDS):
                    opened = self._attempt()
                continue
            try:
                self._read(opened)
            except Exception as exc:  # noqa: BLE001 - see the class docstring
                self._report(False, f"{self.what} stopped working: {type(exc).__name__}: {exc}")
            finally:
                opened.close()
                opened = None

    def _report(self, works: bool, detail: str) -> None:
        """Only changes: a port that stays missing is not reported again every second."""
        if works != self._works:
            self._works = works
            self._on_status(works, detail)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)


class MatrixPins:
    """The row and column pins of a matrix keypad, claimed together or not at all."""

    def __init__(self, cfg: KeypadConfig, *, pin_factory=None):
        pf = {"pin_factory": pin_factory}
        with ExitStack() as claimed:  # a pin that cannot be claimed releases those claimed before it
            self.rows = [claimed.enter_context(OutputDevice(p, active_high=False, initial_value=False, **pf))
                         for p in cfg.row_pins]
            self.columns = [claimed.enter_context(DigitalInputDevice(p, pull_up=True, **pf)) for p in cfg.column_pins]
            claimed.pop_all()

    def close(self) -> None:
        for device in (*self.rows, *self.columns):
            device.close()


class MatrixKeypad(Keypad):
    def __init__(self, cfg: KeypadConfig, on_key: Callable[[str], None], on_status: OnStatus, *, pin_factory=None):
        self._cfg = cfg
        self._pin_factory = pin_factory
        pins = ", ".join(f"GPIO{p}" for p in (*cfg.row_pins, *cfg.column_pins))
        super().__init__(f"the matrix keypad on {pins}", on_key, on_status)

    def _open(self) -> MatrixPins:
        return MatrixPins(self._cfg, pin_factory=self._pin_factory)

    def _read(self, pins: MatrixPins) -> None:
        keys = self._cfg.keys
        held: set[str] = set()
        while not self._stop.wait(SCAN_SECONDS):
            down = set()
            for r, row in enumerate(pins.rows):
                row.on()
                down.update(keys[r][c] for c, column in enumerate(pins.columns) if column.is_active)
                row.off()
            # A key counts once when it goes down; holding it does not repeat it.
            for key in sorted(down - held):
                self._on_key(key)
            held = down


class SerialKeypad(Keypad):
    """Each character the device sends is one key; CR or LF is the enter key."""

    def __init__(self, cfg: KeypadConfig, on_key: Callable[[str], None], on_status: OnStatus, *, enter_key: str):
        self._cfg = cfg
        self._enter_key = enter_key
        super().__init__(f"the serial keypad {cfg.device}", on_key, on_status)

    def _open(self) -> serial.Serial:
        # Exclusive, as the card reader's port: a second reader of the port would split the keys.
        return serial.serial_for_url(self._cfg.device, baudrate=self._cfg.baudrate, timeout=0.2, exclusive=True)

    def _read(self, port: serial.Serial) -> None:
        while not self._stop.is_set():
            for char in port.read(max(1, port.in_waiting)).decode("ascii", "replace"):
                self._on_key(self._enter_key if char in LINE_ENDS else char)


def build_keypad(cfg: KeypadConfig, on_key: Callable[[str], None], on_status: OnStatus, *, enter_key: str,
                 pin_factory=None) -> Keypad:
    if cfg.type == "matrix":
        return MatrixKeypad(cfg, on_key, on_status, pin_factory=pin_factory)
    return SerialKeypad(cfg, on_key, on_status, enter_key=enter_key)
