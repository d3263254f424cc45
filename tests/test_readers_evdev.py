"""Keyboard-wedge readers: the key state machine, and the reader on a fake input device."""

import errno
import os
import time
from collections import namedtuple

import pytest
from evdev import ecodes

from device.config import ReaderConfig
from device.readers.base import CardRead, GarbledRead, ReaderError, ReaderLoop
from device.readers.evdev_reader import MAX_KEYS, EvdevReader, KeyAccumulator
from test_reader_loop import Collector

Event = namedtuple("Event", "type code value")
UP, DOWN, REPEAT = 0, 1, 2


def feed_all(accumulator, key_names):
    return [accumulator.feed(name) for name in key_names]


def keys(text):
    return [f"KEY_{c}" for c in text] + ["KEY_ENTER"]


# --- KeyAccumulator ---------------------------------------------------------------


def test_digits_then_enter_give_the_number():
    results = feed_all(KeyAccumulator(), keys("0001234567"))
    assert results == [None] * 10 + ["0001234567"]


def test_keypad_digits_and_keypad_enter():
    results = feed_all(KeyAccumulator(), ["KEY_KP1", "KEY_KP2", "KEY_KP0", "KEY_KPENTER"])
    assert results[-1] == "120"


def test_shifted_hex_letters_read_as_letters():
    names = ["KEY_0", "KEY_4", "KEY_LEFTSHIFT", "KEY_A", "KEY_2", "KEY_RIGHTSHIFT", "KEY_B", "KEY_ENTER"]
    assert feed_all(KeyAccumulator(), names)[-1] == "04A2B"


def test_enter_alone_gives_nothing():
    assert KeyAccumulator().feed("KEY_ENTER") is None


def test_unknown_key_is_garbled_and_the_rest_of_that_number_is_dropped():
    accumulator = KeyAccumulator()
    feed_all(accumulator, ["KEY_1", "KEY_2"])
    with pytest.raises(GarbledRead, match="KEY_SPACE"):
        accumulator.feed("KEY_SPACE")
    assert feed_all(accumulator, keys("34")) == [None, None, None]
    assert feed_all(accumulator, keys("5678"))[-1] == "5678"


def test_over_long_number_is_garbled_and_the_next_number_reads():
    accumulator = KeyAccumulator()
    feed_all(accumulator, ["KEY_9"] * MAX_KEYS)
    with pytest.raises(GarbledRead, match="without Enter"):
        accumulator.feed("KEY_9")
    assert feed_all(accumulator, ["KEY_9"] * 100 + ["KEY_ENTER"])[-1] is None
    assert feed_all(accumulator, keys("42"))[-1] == "42"


# --- EvdevReader on a fake device -------------------------------------------------


class FakeInputDevice:
    """Stands in for evdev.InputDevice; a pipe gives it a real fd for select()."""

    def __init__(self, path):
        self.path = path
        self.fd, self._wake = os.pipe()
        self.events = []
        self.error = None
        self.grabbed = False
        self.closed = False

    def type(self, text):
        for char in text:
            code = ecodes.KEY_ENTER if char == "\n" else ecodes.ecodes[f"KEY_{char}"]
            self.events += [Event(ecodes.EV_KEY, code, DOWN), Event(ecodes.EV_KEY, code, UP), Event(ecodes.EV_SYN, 0, 0)]
        os.write(self._wake, b".")

    def unplug(self):
        self.error = OSError(errno.ENODEV, "No such device")
        os.write(self._wake, b".")

    def read(self):
        os.read(self.fd, 1024)
        if self.error:
            raise self.error
        events, self.events = self.events, []
        return iter(events)

    def grab(self):
        self.grabbed = True

    def ungrab(self):
        if self.error:
            raise self.error
        self.grabbed = False

    def close(self):
        self.closed = True
        os.close(self.fd)
        os.close(self._wake)


class Devices:
    """The factory for EvdevReader: hands out fake devices, or fails like a missing one."""

    def __init__(self):
        self.made = []
        self.missing = False

    def __call__(self, path):
        if self.missing:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        device = FakeInputDevice(path)
        self.made.append(device)
        return device

    @property
    def current(self):
        return self.made[-1]


CFG = ReaderConfig(type="evdev", device="/dev/input/by-id/usb-reader-event-kbd")


@pytest.fixture
def devices():
    made = Devices()
    yield made
    for device in made.made:
        if not device.closed:
            device.close()


def test_typed_number_is_read_and_the_device_is_grabbed(devices):
    reader = EvdevReader(CFG, factory=devices)
    reader.open()
    assert devices.current.grabbed
    devices.current.type("0001234567\n")
    assert reader.read() == CardRead(text="0001234567")


def test_key_up_and_auto_repeat_are_not_typed_keys(devices):
    reader = EvdevReader(CFG, factory=devices)
    reader.open()
    device = devices.current
    device.events += [Event(ecodes.EV_KEY, ecodes.KEY_5, REPEAT), Event(ecodes.EV_KEY, ecodes.KEY_6, UP)]
    device.type("12\n")
    assert reader.read() == CardRead(text="12")


def test_two_numbers_in_one_batch_are_both_read(devices):
    reader = EvdevReader(CFG, factory=devices)
    reader.open()
    devices.current.type("1111\n2222\n")
    assert [reader.read(), reader.read()] == [CardRead(text="1111"), CardRead(text="2222")]


def test_unknown_key_is_garbled(devices):
    reader = EvdevReader(CFG, factory=devices)
    reader.open()
    devices.current.events.append(Event(ecodes.EV_KEY, ecodes.KEY_TAB, DOWN))
    devices.current.type("\n42\n")
    with pytest.raises(GarbledRead, match="KEY_TAB"):
        reader.read()
    assert reader.read() == CardRead(text="42")


def test_read_waits_at_most_about_the_read_timeout(devices):
    reader = EvdevReader(CFG, factory=devices)
    reader.open()
    started = time.monotonic()
    assert reader.read() is None
    assert 0.15 <= time.monotonic() - started < 0.6


def test_unplugged_device_is_a_reader_error(devices):
    reader = EvdevReader(CFG, factory=devices)
    reader.open()
    devices.current.unplug()
    with pytest.raises(ReaderError, match="unplugged"):
        reader.read()
    reader.close()
    assert devices.current.closed


def test_close_releases_the_grab(devices):
    reader = EvdevReader(CFG, factory=devices)
    reader.open()
    reader.close()
    assert not devices.current.grabbed and devices.current.closed


def test_missing_device_is_a_reader_error_with_a_hint(devices):
    devices.missing = True
    with pytest.raises(ReaderError, match="/dev/input/by-id/"):
        EvdevReader(CFG, factory=devices).open()


def test_no_permission_names_the_input_group():
    def forbidden(path):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    with pytest.raises(ReaderError, match="input group"):
        EvdevReader(CFG, factory=forbidden).open()


def test_device_grabbed_by_another_program_is_a_reader_error(devices):
    def busy():
        raise OSError(errno.EBUSY, "Device or resource busy")

    def busy_device(path):
        device = devices(path)
        device.grab = busy
        return device

    with pytest.raises(ReaderError, match="another program"):
        EvdevReader(CFG, factory=busy_device).open()
    assert devices.current.closed


def test_wedge_reader_unplugged_and_plugged_back(devices):
    got = Collector()
    loop = ReaderLoop(EvdevReader(CFG, factory=devices), got.on_card, on_status=got.on_status, reconnect_delays=(0.05,))
    loop.start()
    try:
        got.wait_for(lambda: got.statuses == [(True, "ok")])
        devices.current.type("1111\n")
        got.wait_for(lambda: got.cards == ["1111"])
        devices.missing = True
        devices.current.unplug()
        got.wait_for(lambda: len(got.statuses) == 2)
        time.sleep(0.2)
        devices.missing = False
        got.wait_for(lambda: len(got.statuses) == 3)
        devices.current.type("2222\n")
        got.wait_for(lambda: len(got.cards) == 2)
    finally:
        loop.stop()
    assert got.cards == ["1111", "2222"]
    assert [online for online, _ in got.statuses] == [True, False, True]
    assert "unplugged" in got.statuses[1][1]
