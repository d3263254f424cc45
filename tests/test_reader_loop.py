"""ReaderLoop: canonical numbers, repeats, bad reads, reconnecting, stopping; the stdin reader."""

import io
import logging
import os
import queue
import threading
import time

import pytest

from device.config import ReaderConfig
from device.readers import build_reader
from device.readers.base import CardRead, GarbledRead, ReaderError, ReaderFinished, ReaderLoop
from device.readers.evdev_reader import EvdevReader
from device.readers.mfrc522_reader import Mfrc522Reader
from device.readers.serial_reader import SerialReader
from device.readers.stdin_reader import StdinReader

FAST = (0.01, 0.02)


class Collector:
    """Receives on_card and on_status calls from the loop thread; tests wait on it."""

    def __init__(self):
        self.cards = []
        self.statuses = []
        self._changed = threading.Condition()

    def on_card(self, number):
        with self._changed:
            self.cards.append(number)
            self._changed.notify_all()

    def on_status(self, online, reason):
        with self._changed:
            self.statuses.append((online, reason))
            self._changed.notify_all()

    def wait_for(self, predicate, timeout=5.0):
        with self._changed:
            ok = self._changed.wait_for(predicate, timeout)
        assert ok, f"timed out: cards={self.cards} statuses={self.statuses}"


@pytest.fixture
def run_loop():
    """Start a ReaderLoop wired to a Collector; every loop is stopped after the test."""
    loops = []

    def start(reader, collector, **kwargs):
        loop = ReaderLoop(reader, collector.on_card, on_status=collector.on_status, **kwargs)
        loops.append(loop)
        loop.start()
        return loop

    yield start
    for loop in loops:
        loop.stop()


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeReader:
    """A reader the test scripts: reads (or exceptions) to hand out, and failures to open."""

    name = "fake"

    def __init__(self, clock=None):
        self._script = queue.Queue()
        self._clock = clock
        self.open_errors = queue.Queue()
        self.opens = []
        self.closes = 0

    def add(self, item, at=None):
        """Queue a CardRead, None or an exception; at sets the clock when it is read."""
        self._script.put((at, item))

    def open(self):
        self.opens.append(time.monotonic())
        if not self.open_errors.empty():
            raise self.open_errors.get()

    def read(self):
        try:
            at, item = self._script.get(timeout=0.2)
        except queue.Empty:
            return None
        if at is not None:
            self._clock.now = at
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self):
        self.closes += 1


def card(hex_uid):
    return CardRead(uid=bytes.fromhex(hex_uid))


# --- canonical numbers ------------------------------------------------------------


@pytest.mark.parametrize(
    "uid_format, expected",
    [("hex", "04A21B3C"), ("decimal", "0077732668"), ("decimal_reversed", "1008443908")],
)
def test_uid_read_becomes_the_canonical_number(run_loop, uid_format, expected):
    reader, got = FakeReader(), Collector()
    reader.add(card("04A21B3C"))
    run_loop(reader, got, uid_format=uid_format)
    got.wait_for(lambda: got.cards)
    assert got.cards == [expected]


def test_typed_number_loses_its_separators_and_keeps_its_case(run_loop):
    # The card key normalises the case; the SIP2 check sends the number as the library system knows it.
    reader, got = FakeReader(), Collector()
    reader.add(CardRead(text=" 04:a2-1b 3c "))
    run_loop(reader, got)
    got.wait_for(lambda: got.cards)
    assert got.cards == ["04a21b3c"]


def test_unknown_uid_format_is_refused_at_once():
    with pytest.raises(ValueError, match="uid_format"):
        ReaderLoop(FakeReader(), print, uid_format="octal")


# --- repeats ----------------------------------------------------------------------


def test_same_card_within_the_window_counts_once_and_again_after_it(run_loop):
    clock = FakeClock()
    reader, got = FakeReader(clock), Collector()
    reader.add(card("04A21B3C"), at=0.0)
    reader.add(card("04A21B3C"), at=2.9)
    reader.add(card("04A21B3C"), at=6.0)
    reader.add(card("11111111"), at=6.1)  # marks the end of the script
    run_loop(reader, got, dedupe_seconds=3.0, clock=clock)
    got.wait_for(lambda: len(got.cards) == 3)
    assert got.cards == ["04A21B3C", "04A21B3C", "11111111"]


def test_card_resting_on_the_reader_counts_once(run_loop):
    clock = FakeClock()
    reader, got = FakeReader(clock), Collector()
    for tick in range(50):  # re-read five times a second for ten seconds
        reader.add(card("04A21B3C"), at=tick * 0.2)
    reader.add(card("11111111"), at=10.0)
    run_loop(reader, got, dedupe_seconds=3.0, clock=clock)
    got.wait_for(lambda: "11111111" in got.cards)
    assert got.cards == ["04A21B3C", "11111111"]


def test_different_cards_pass_at_once(run_loop):
    clock = FakeClock()
    reader, got = FakeReader(clock), Collector()
    reader.add(card("04A21B3C"), at=0.0)
    reader.add(card("11111111"), at=0.1)
    reader.add(card("04A21B3C"), at=0.2)
    run_loop(reader, got, dedupe_seconds=3.0, clock=clock)
    got.wait_for(lambda: len(got.cards) == 3)
    assert got.cards == ["04A21B3C", "11111111", "04A21B3C"]


def test_same_card_from_uid_and_from_typed_text_is_one_card(run_loop):
    clock = FakeClock()
    reader, got = FakeReader(clock), Collector()
    reader.add(card("1A499602D2"), at=0.0)
    reader.add(CardRead(text="1234567890"), at=0.5)
    reader.add(CardRead(text="0001234567"), at=0.6)
    run_loop(reader, got, uid_format="decimal", clock=clock)
    got.wait_for(lambda: len(got.cards) == 2)
    assert got.cards == ["1234567890", "0001234567"]


# --- bad reads --------------------------------------------------------------------


def test_garbled_reads_never_reach_on_card_and_are_logged_without_content(run_loop, caplog):
    reader, got = FakeReader(), Collector()
    reader.add(GarbledRead("frame checksum does not match"))
    reader.add(CardRead(text="12345!789"))
    reader.add(CardRead(uid=b"\x01\x02"))  # too short for a decimal number
    reader.add(CardRead(text="0001234567"))
    with caplog.at_level(logging.WARNING, logger="omaovi.readers"):
        run_loop(reader, got, uid_format="decimal")
        got.wait_for(lambda: got.cards)
    assert got.cards == ["0001234567"]
    assert "checksum" in caplog.text
    assert "12345!789" not in caplog.text
    assert "0001234567" not in caplog.text


def test_a_flood_of_garbled_reads_is_logged_once_per_interval(run_loop, caplog):
    clock = FakeClock()
    reader, got = FakeReader(clock), Collector()
    for n in range(100):
        reader.add(GarbledRead("noise"), at=n * 0.1)
    reader.add(GarbledRead("noise"), at=61.0)
    reader.add(CardRead(text="1"), at=61.0)
    with caplog.at_level(logging.WARNING, logger="omaovi.readers"):
        run_loop(reader, got, clock=clock)
        got.wait_for(lambda: got.cards)
    warnings = [r.getMessage() for r in caplog.records if "not a card" in r.getMessage()]
    assert len(warnings) == 2
    assert "99 more" in warnings[1]


def test_every_dropped_read_is_logged_at_debug_level_and_counted(run_loop, caplog):
    clock = FakeClock()
    reader, got = FakeReader(clock), Collector()
    for n in range(30):
        reader.add(GarbledRead(f"noise {n}"), at=n * 0.1)
    reader.add(CardRead(text="12345!789"), at=3.0)
    reader.add(CardRead(text="1"), at=3.0)
    with caplog.at_level(logging.DEBUG, logger="omaovi.readers"):
        loop = run_loop(reader, got, clock=clock)
        got.wait_for(lambda: got.cards)
    dropped = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "dropped a read" in r.getMessage()]
    assert len(dropped) == 31 and dropped[29].endswith("noise 29")
    assert loop.dropped_reads == 31
    assert "12345!789" not in caplog.text


def test_a_failing_on_card_does_not_stop_the_reader(caplog):
    reader, got = FakeReader(), Collector()
    reader.add(card("04A21B3C"))
    reader.add(card("11111111"))

    def on_card(number):
        if number == "04A21B3C":
            raise RuntimeError("database locked")
        got.on_card(number)

    loop = ReaderLoop(reader, on_card)
    loop.start()
    try:
        got.wait_for(lambda: got.cards)
    finally:
        loop.stop()
    assert got.cards == ["11111111"]
    assert "database locked" in caplog.text


# --- reconnecting -----------------------------------------------------------------


def test_missing_reader_is_reported_once_then_opens(run_loop, caplog):
    reader, got = FakeReader(), Collector()
    for _ in range(3):
        reader.open_errors.put(ReaderError("/dev/spidev0.0 not found: enable SPI"))
    reader.add(card("04A21B3C"))
    with caplog.at_level(logging.INFO, logger="omaovi.readers"):
        loop = run_loop(reader, got, reconnect_delays=FAST)
        got.wait_for(lambda: got.cards)
    assert got.statuses == [(False, "/dev/spidev0.0 not found: enable SPI"), (True, "ok")]
    assert caplog.text.count("not available") == 1
    assert len(reader.opens) == 4
    assert loop.online


def test_disconnect_and_reconnect(run_loop, caplog):
    reader, got = FakeReader(), Collector()
    reader.add(card("04A21B3C"))
    with caplog.at_level(logging.INFO, logger="omaovi.readers"):
        loop = run_loop(reader, got, reconnect_delays=FAST)
        got.wait_for(lambda: got.cards)
        reader.open_errors.put(ReaderError("serial port gone"))
        reader.open_errors.put(ReaderError("serial port gone"))
        reader.add(OSError(5, "Input/output error"))
        reader.add(card("11111111"))
        got.wait_for(lambda: len(got.cards) == 2)
    assert got.statuses == [(True, "ok"), (False, "[Errno 5] Input/output error"), (True, "ok")]
    assert caplog.text.count("reader fake disconnected: [Errno 5] Input/output error") == 1
    assert caplog.text.count("reader fake reconnected") == 1
    assert reader.closes >= 3  # after the read failure and after both failed opens
    assert loop.online


def test_online_follows_the_reader(run_loop):
    reader, got = FakeReader(), Collector()
    reader.open_errors.put(ReaderError("gone"))
    loop = run_loop(reader, got, reconnect_delays=(0.5,))
    got.wait_for(lambda: got.statuses)
    assert not loop.online
    got.wait_for(lambda: len(got.statuses) == 2)
    assert loop.online


def test_retry_delays_grow_and_the_last_one_repeats(run_loop):
    reader, got = FakeReader(), Collector()
    for _ in range(6):
        reader.open_errors.put(ReaderError("gone"))
    run_loop(reader, got, reconnect_delays=(0.05, 0.1, 0.2))
    got.wait_for(lambda: (True, "ok") in got.statuses)
    gaps = [b - a for a, b in zip(reader.opens, reader.opens[1:])]
    assert len(gaps) == 6
    for gap, delay in zip(gaps, [0.05, 0.1, 0.2, 0.2, 0.2, 0.2]):
        assert delay - 0.01 <= gap < delay + 0.5


def test_unexpected_error_in_a_reader_reconnects_instead_of_killing_the_thread(run_loop, caplog):
    reader, got = FakeReader(), Collector()
    reader.add(ValueError("bug in a reader"))
    reader.add(card("04A21B3C"))
    run_loop(reader, got, reconnect_delays=FAST)
    got.wait_for(lambda: got.cards)
    assert got.statuses == [(True, "ok"), (False, "bug in a reader"), (True, "ok")]
    assert "Traceback" in caplog.text


# --- stopping and idling ----------------------------------------------------------


def test_stop_is_prompt_even_while_waiting_to_retry():
    reader, got = FakeReader(), Collector()
    reader.open_errors.put(ReaderError("gone"))
    loop = ReaderLoop(reader, got.on_card, on_status=got.on_status, reconnect_delays=(60,))
    loop.start()
    got.wait_for(lambda: got.statuses)
    started = time.monotonic()
    loop.stop()
    assert time.monotonic() - started < 1.0
    assert loop.wait(0)


def test_stop_closes_the_reader():
    reader, got = FakeReader(), Collector()
    loop = ReaderLoop(reader, got.on_card, on_status=got.on_status)
    loop.start()
    got.wait_for(lambda: got.statuses)
    loop.stop()
    assert loop.wait(0)
    assert reader.closes == 1
    assert not loop.online


class ImpatientReader(FakeReader):
    """A badly behaved reader whose read() returns at once instead of blocking."""

    reads = 0

    def read(self):
        self.reads += 1
        return None


def test_loop_does_not_spin_on_a_reader_that_returns_at_once(run_loop):
    reader, got = ImpatientReader(), Collector()
    run_loop(reader, got)
    got.wait_for(lambda: got.statuses)
    reads_before, cpu_before = reader.reads, time.process_time()
    time.sleep(1.0)
    assert reader.reads - reads_before <= 25
    assert time.process_time() - cpu_before < 0.1


# --- the stdin reader -------------------------------------------------------------


def test_stdin_lines_become_numbers_and_end_of_input_ends_the_loop(run_loop):
    got = Collector()
    loop = run_loop(StdinReader(io.StringIO("0001234567\n\n 04:a2:1b:3c \n")), got)
    assert loop.wait(5)
    assert got.cards == ["0001234567", "04a21b3c"]
    assert got.statuses == [(True, "ok"), (False, "finished: end of input")]


def test_end_of_input_is_not_reopened(run_loop):
    reader, got = FakeReader(), Collector()
    reader.add(ReaderFinished("end of input"))
    loop = run_loop(reader, got, reconnect_delays=FAST)
    assert loop.wait(5)
    assert len(reader.opens) == 1


def test_stdin_that_stays_open_still_stops_promptly():
    read_end, write_end = os.pipe()
    got = Collector()
    with os.fdopen(read_end) as stream, os.fdopen(write_end, "w") as typing:
        loop = ReaderLoop(StdinReader(stream), got.on_card, on_status=got.on_status)
        loop.start()
        typing.write("1234\n")
        typing.flush()
        got.wait_for(lambda: got.cards)
        started = time.monotonic()
        loop.stop()
        assert loop.wait(0)
        assert time.monotonic() - started < 1.0
    assert got.cards == ["1234"]


# --- choosing the reader ----------------------------------------------------------


@pytest.mark.parametrize(
    "cfg, cls",
    [
        (ReaderConfig(type="mfrc522"), Mfrc522Reader),
        (ReaderConfig(type="serial", device="/dev/ttyUSB0", framing="rdm6300"), SerialReader),
        (ReaderConfig(type="evdev", device="/dev/input/event0"), EvdevReader),
    ],
)
def test_build_reader_picks_the_reader_for_the_type(cfg, cls):
    # Building must not need the hardware libraries: off a Pi, importing mfrc522 fails.
    assert isinstance(build_reader(cfg), cls)


def test_build_reader_reads_the_given_stdin(run_loop):
    got = Collector()
    loop = run_loop(build_reader(ReaderConfig(type="stdin"), stdin=io.StringIO("42\n")), got)
    assert loop.wait(5)
    assert got.cards == ["42"]
