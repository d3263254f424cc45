"""Serial readers end to end: bytes on a port come out of a ReaderLoop as card numbers."""

import logging
import os
import re
import threading
import time

import pytest
import serial

from device.config import ReaderConfig
from device.readers.base import CardRead, ReaderError, ReaderLoop
from device.readers.framing import IDLE_GAP
from device.readers.serial_reader import SerialReader
from test_reader_loop import Collector, run_loop  # noqa: F401 - run_loop is a fixture

# The EM4100 tag with customer byte 1A and ID 00 12 D6 87, which is printed on the
# tag as 0001234567 (0x0012D687 = 1234567); its checksum is 0x59.
RDM6300_FRAME = b"\x02" + b"1A0012D687" + b"59" + b"\x03"
PRINTED_NUMBER = "0001234567"


class Pty:
    """A pseudo-terminal standing in for a USB serial reader.

    The reader is configured with a symlink, like /dev/serial/by-id/..., that is
    pointed at a new pseudo-terminal each time the device is plugged in.
    """

    def __init__(self, link):
        self.link = str(link)
        self.master = self.slave = None

    def plug(self):
        self.master, self.slave = os.openpty()
        new_link = self.link + ".new"
        os.symlink(os.ttyname(self.slave), new_link)
        os.replace(new_link, self.link)

    def unplug(self):
        # Like udev, drop the link too: a freed /dev/pts/N is soon reused by any
        # other process on the machine, and the reader would "reconnect" to it.
        os.unlink(self.link)
        os.close(self.master)
        os.close(self.slave)
        self.master = self.slave = None

    def send(self, data):
        os.write(self.master, data)


@pytest.fixture
def pty(tmp_path):
    device = Pty(tmp_path / "ttyREADER")
    device.plug()
    yield device
    if device.master is not None:
        device.unplug()


@pytest.fixture
def loop_ports():
    """Open loop:// ports through SerialReader and keep them, so a test can write into them."""
    ports = []

    def open_port(url, **kwargs):
        port = serial.serial_for_url(url, **kwargs)
        ports.append(port)
        return port

    return ports, open_port


def line_reader(device, **kwargs):
    return SerialReader(ReaderConfig(type="serial", device=device, framing="line"), **kwargs)


def rdm6300_reader(device, **kwargs):
    return SerialReader(ReaderConfig(type="serial", device=device, framing="rdm6300"), **kwargs)


# --- loop:// ----------------------------------------------------------------------


def test_lines_on_a_loop_port_become_cards(run_loop, loop_ports):
    ports, open_port = loop_ports
    got = Collector()
    run_loop(line_reader("loop://", open_port=open_port), got)
    got.wait_for(lambda: got.statuses == [(True, "ok")])
    ports[0].write(b"04:a2:1b:3c\r\n0001234567\r\n")
    got.wait_for(lambda: len(got.cards) == 2)
    assert got.cards == ["04a21b3c", "0001234567"]  # as typed: the card key normalises the case


def test_rdm6300_frame_on_a_loop_port_gives_the_printed_number(run_loop, loop_ports):
    ports, open_port = loop_ports
    got = Collector()
    run_loop(rdm6300_reader("loop://", open_port=open_port), got, uid_format="decimal")
    got.wait_for(lambda: got.statuses == [(True, "ok")])
    ports[0].write(RDM6300_FRAME)
    got.wait_for(lambda: got.cards)
    assert got.cards == [PRINTED_NUMBER]


def test_closed_loop_port_is_reopened(run_loop, loop_ports):
    ports, open_port = loop_ports
    got = Collector()
    run_loop(line_reader("loop://", open_port=open_port), got, reconnect_delays=(0.05,))
    got.wait_for(lambda: got.statuses == [(True, "ok")])
    ports[0].close()
    got.wait_for(lambda: len(got.statuses) == 3)
    ports[1].write(b"1234\n")
    got.wait_for(lambda: got.cards)
    assert got.cards == ["1234"]
    assert [online for online, _ in got.statuses] == [True, False, True]


# --- a real pseudo-terminal -------------------------------------------------------


def test_a_second_reader_cannot_open_a_port_in_use(pty):
    """Two readers on one port would each get pieces of every frame: one card, two wrong numbers."""
    first = line_reader(pty.link)
    first.open()
    try:
        with pytest.raises(ReaderError, match=rf"serial port {re.escape(pty.link)} is in use by another process.*fuser -v"):
            line_reader(pty.link).open()
        pty.send(b"0001234567\r\n")
        assert first.read().text == "0001234567"
    finally:
        first.close()
    second = line_reader(pty.link)
    second.open()  # free again once the first has closed it
    second.close()



def test_lines_on_a_pty_become_cards(run_loop, pty):
    got = Collector()
    run_loop(line_reader(pty.link), got)
    got.wait_for(lambda: got.statuses == [(True, "ok")])
    pty.send(b"0001234567\r\n")
    pty.send(b"04A2")
    time.sleep(0.3)
    pty.send(b"1B3C\n4444\n")
    got.wait_for(lambda: len(got.cards) == 3)
    assert got.cards == ["0001234567", "04A21B3C", "4444"]


def test_a_stray_byte_before_a_tap_is_dropped_and_the_tap_reads(run_loop, pty, caplog):
    """A reader plugged in hot, or a spike on the line, leaves a byte with no line end."""
    got = Collector()
    with caplog.at_level(logging.DEBUG, logger="omaovi.readers"):
        loop = run_loop(line_reader(pty.link), got)
        got.wait_for(lambda: got.statuses == [(True, "ok")])
        pty.send(b"7")
        time.sleep(IDLE_GAP + 0.5)  # the patron walks up a moment later
        pty.send(b"0001234567\r\n")
        got.wait_for(lambda: got.cards)
    assert got.cards == ["0001234567"]
    assert loop.dropped_reads == 1
    assert "dropped a read that is not a card: 1 bytes without a line end" in caplog.text


def test_rdm6300_and_a_reader_typing_the_printed_number_agree(run_loop, tmp_path):
    rdm6300, typing = Pty(tmp_path / "rdm6300"), Pty(tmp_path / "typing")
    rdm6300.plug()
    typing.plug()
    try:
        from_tag, from_typing = Collector(), Collector()
        run_loop(rdm6300_reader(rdm6300.link), from_tag, uid_format="decimal")
        run_loop(line_reader(typing.link), from_typing, uid_format="decimal")
        from_tag.wait_for(lambda: from_tag.statuses)
        from_typing.wait_for(lambda: from_typing.statuses)
        rdm6300.send(RDM6300_FRAME)
        typing.send(PRINTED_NUMBER.encode() + b"\r\n")
        from_tag.wait_for(lambda: from_tag.cards)
        from_typing.wait_for(lambda: from_typing.cards)
        assert from_tag.cards == from_typing.cards == [PRINTED_NUMBER]
    finally:
        rdm6300.unplug()
        typing.unplug()


def test_unplugged_and_replugged_reader_works_again_within_5_seconds(run_loop, pty, caplog):
    caplog.set_level(logging.INFO, logger="omaovi.readers")
    got = Collector()
    loop = run_loop(line_reader(pty.link), got)  # the production retry delays
    got.wait_for(lambda: got.statuses == [(True, "ok")])
    pty.send(b"1111\n")
    got.wait_for(lambda: got.cards == ["1111"])

    pty.unplug()
    got.wait_for(lambda: len(got.statuses) == 2)
    assert got.statuses[1][0] is False
    assert not loop.online
    time.sleep(1.0)  # a few failed attempts to reopen

    pty.plug()
    replugged = time.monotonic()
    got.wait_for(lambda: len(got.statuses) == 3, timeout=6)
    assert time.monotonic() - replugged < 5.0
    assert got.statuses[2] == (True, "ok")
    pty.send(b"2222\n")
    got.wait_for(lambda: len(got.cards) == 2)
    assert got.cards == ["1111", "2222"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and " disconnected: " in warnings[0]
    assert "reconnected" in caplog.text


def test_unplugged_port_raises_reader_error(pty):
    reader = line_reader(pty.link)
    reader.open()
    try:
        pty.unplug()
        with pytest.raises(ReaderError, match="stopped working"):
            for _ in range(10):
                reader.read()
    finally:
        reader.close()


def test_missing_port_raises_reader_error_with_a_hint(tmp_path):
    with pytest.raises(ReaderError, match="dialout"):
        line_reader(str(tmp_path / "ttyUSB9")).open()


def test_idle_serial_reader_uses_almost_no_cpu(pty):
    got = Collector()
    loop = ReaderLoop(line_reader(pty.link), got.on_card, on_status=got.on_status)
    loop.start()
    try:
        got.wait_for(lambda: got.statuses)
        cpu_before = time.process_time()
        time.sleep(2.0)
        cpu_used = time.process_time() - cpu_before
    finally:
        loop.stop()
    assert cpu_used < 0.1



def test_a_frame_arriving_in_pieces_comes_out_of_one_read(pty):
    """Returning "nothing yet" mid-frame would make the ReaderLoop idle before reading on,
    adding up to MIN_IDLE_READ (50 ms) to the tap (found by the P1 benchmark)."""
    reader = line_reader(pty.link)
    reader.open()

    def trickle():
        time.sleep(0.02)
        pty.send(b"1000")
        time.sleep(0.01)
        pty.send(b"0001\r\n")

    sender = threading.Thread(target=trickle)
    sender.start()
    try:
        assert reader.read() == CardRead(text="10000001")
    finally:
        sender.join()
        reader.close()
