"""USB keyboard-wedge readers: readers that "type" the card number and press Enter.

The device is read through evdev and grabbed, so the typed number reaches only
omaovi and never a login prompt on the console.
"""

from __future__ import annotations

import errno
import select
from collections import deque
from typing import Any, Callable

from device.config import ReaderConfig
from device.readers.base import READ_TIMEOUT, CardRead, GarbledRead, ReaderError, take_pending

_KEY_DOWN = 1  # evdev event values: 0 up, 1 down, 2 auto-repeat

_CHARACTERS = {f"KEY_{c}": c for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"} | {
    f"KEY_KP{d}": d for d in "0123456789"
}
_ENTER = frozenset({"KEY_ENTER", "KEY_KPENTER"})
#: Readers that type upper-case hex press Shift; case does not matter in a card number.
_IGNORED = frozenset({"KEY_LEFTSHIFT", "KEY_RIGHTSHIFT"})
MAX_KEYS = 64


class KeyAccumulator:
    """Collects the keys a wedge reader types into one card number per Enter."""

    def __init__(self) -> None:
        self._chars: list[str] = []
        # After a bad key the rest of that number is dropped too: what follows the
        # bad key up to Enter is only part of a card number.
        self._skipping = False

    def feed(self, key_name: str) -> str | None:
        """Take one key press; return the number when Enter ends it.

        Raises GarbledRead for a key no card reader types, or for more than
        MAX_KEYS keys without Enter.
        """
        if key_name in _ENTER:
            text = "".join(self._chars)
            complete = not self._skipping
            self._chars.clear()
            self._skipping = False
            return text if text and complete else None
        if self._skipping or key_name in _IGNORED:
            return None
        char = _CHARACTERS.get(key_name)
        if char is None:
            self._skip()
            raise GarbledRead(f"unexpected key {key_name}")
        if len(self._chars) >= MAX_KEYS:
            self._skip()
            raise GarbledRead(f"more than {MAX_KEYS} keys without Enter")
        self._chars.append(char)
        return None

    def _skip(self) -> None:
        self._chars.clear()
        self._skipping = True


class EvdevReader:
    """Reads a keyboard-wedge reader from /dev/input.

    factory opens the input device from its path (evdev.InputDevice by default);
    tests pass a fake.
    """

    def __init__(self, cfg: ReaderConfig, *, factory: Callable[[str], Any] | None = None):
        self.name = f"evdev {cfg.device}"
        self._path = cfg.device
        self._factory = factory
        self._device: Any = None
        self._key_names: dict[int, Any] = {}
        self._key_event = 0
        self._keys = KeyAccumulator()
        self._pending: deque[CardRead | GarbledRead] = deque()

    def open(self) -> None:
        try:
            import evdev
        except ImportError as exc:
            raise ReaderError(f"python-evdev is not installed ({exc}): pip install evdev") from exc
        self._key_names = evdev.ecodes.KEY
        self._key_event = evdev.ecodes.EV_KEY
        factory = self._factory or evdev.InputDevice
        try:
            device = factory(self._path)
        except PermissionError as exc:
            raise ReaderError(f"no permission to read {self._path}: add the omaovi user to the input group") from exc
        except OSError as exc:
            raise ReaderError(
                f"cannot open input device {self._path}: {exc.strerror or exc}. "
                "Check the cable and the path (ls -l /dev/input/by-id/)"
            ) from exc
        try:
            device.grab()
        except OSError as exc:
            device.close()
            raise ReaderError(f"cannot take {self._path} for omaovi alone ({exc.strerror or exc}): another program holds it") from exc
        self._device = device
        self._keys = KeyAccumulator()
        self._pending.clear()

    def read(self) -> CardRead | None:
        if not self._pending:
            try:
                ready, _, _ = select.select([self._device.fd], [], [], READ_TIMEOUT)
                if ready:
                    for event in self._device.read():
                        if event.type == self._key_event and event.value == _KEY_DOWN:
                            self._press(event.code)
            except BlockingIOError:
                pass  # woken up, but the events were already taken
            except OSError as exc:
                what = "was unplugged" if exc.errno == errno.ENODEV else f"failed: {exc.strerror or exc}"
                raise ReaderError(f"input device {self._path} {what}") from exc
        return take_pending(self._pending)

    def close(self) -> None:
        if self._device is None:
            return
        device, self._device = self._device, None
        try:
            device.ungrab()
        except OSError:
            pass  # an unplugged device cannot be ungrabbed, and need not be
        device.close()

    def _press(self, code: int) -> None:
        name = self._key_names.get(code, f"code {code}")
        if not isinstance(name, str):
            name = name[0]  # evdev lists every alias of some codes
        try:
            text = self._keys.feed(name)
        except GarbledRead as exc:
            self._pending.append(exc)
            return
        if text is not None:
            self._pending.append(CardRead(text=text))
