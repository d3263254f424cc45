"""Serial reader faults through the whole device: unplugged and replugged, garbage, floods.

The reader is a real pseudo-terminal behind a symlink, as /dev/serial/by-id/...
is, and the taps go through the real ReaderLoop, controller and store. What a
user notices is checked: the door works again soon after the reader is plugged
back in, only a card that was really presented opens it, and a reader gone
haywire neither crashes the device nor eats the processor the door needs.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from functools import reduce
from operator import xor

import pytest
from branch_rig import ALLOWED, ALLOWED_TAG, KEY, UNKNOWN, Branch
from test_readers_serial import Pty, pty  # noqa: F401 - pty is a fixture

from device.cards import card_key
from device.config import ReaderConfig

START = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)


def rdm6300_frame(number: int, check: int | None = None) -> bytes:
    """The frame of a 125 kHz tag with customer byte 1A whose printed number is ``number``."""
    uid = bytes([0x1A]) + number.to_bytes(4, "big")
    return b"\x02" + (uid + bytes([reduce(xor, uid) if check is None else check])).hex().upper().encode() + b"\x03"


@pytest.fixture
def branch(tmp_path, pty):
    made = []

    def build(framing: str = "line", dedupe_seconds: float = 0.0) -> Branch:
        reader = ReaderConfig(type="serial", device=pty.link, framing=framing, dedupe_seconds=dedupe_seconds)
        made.append(Branch(tmp_path, START, reader=reader))
        made[-1].start()
        made[-1].wait_for_event(type="reader_online")
        return made[-1]

    yield build
    for b in made:
        b.close()


def taps(b: Branch) -> list[tuple[str | None, str]]:
    """(card number or None for any other card, reason) of each logged tap."""
    known = {card_key(KEY, number): number for number in (ALLOWED, ALLOWED_TAG)}
    return [(known.get(e["card_key"]), e["reason"]) for e in b.events(type="tap")]


def test_a_reader_unplugged_for_a_while_works_again_within_5_seconds_of_being_plugged_back(branch, pty):
    b = branch()
    pty.send(ALLOWED.encode() + b"\r\n")
    b.wait_for_event(type="tap")

    pty.unplug()
    b.wait_for_event(type="reader_offline")
    time.sleep(4.0)  # long enough that the reader loop has backed off to its longest retry delay
    pty.plug()
    plugged = time.monotonic()
    while len(b.events(type="reader_online")) < 2:
        assert time.monotonic() - plugged < 5.0, "the reader did not reconnect within 5 s"
        time.sleep(0.02)
    pty.send(ALLOWED.encode() + b"\r\n")
    b.wait_for_event(type="tap", timeout=2.0)
    while len(b.events(type="tap")) < 2:
        assert time.monotonic() - plugged < 6.0, "the tap after reconnecting did not reach the controller"
        time.sleep(0.02)
    assert taps(b) == [(ALLOWED, "granted"), (ALLOWED, "granted")]


GARBAGE_SEED = 20261125


@pytest.mark.parametrize("framing, card, valid_frame", [
    ("line", ALLOWED, ALLOWED.encode() + b"\r\n"),
    ("rdm6300", ALLOWED_TAG, rdm6300_frame(int(ALLOWED_TAG))),
])
def test_garbage_and_half_frames_open_nothing_and_the_next_real_card_still_reads(branch, pty, framing, card, valid_frame):
    b = branch(framing)
    rng = random.Random(GARBAGE_SEED)
    noise = [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(30)
    ] + [
        valid_frame[: len(valid_frame) // 2],  # a half frame, then the reader was moved away
        valid_frame[:-1] + b"\x00",  # a frame broken at its end
        rdm6300_frame(int(ALLOWED_TAG), check=0x00),  # a wrong checksum
        b"9" * 500 + b"\r\n",  # a line far longer than any card number
        b"\x02" * 50 + b"\x03" * 50,
    ]
    for chunk in noise:
        pty.send(chunk)
    time.sleep(0.5)
    # Whatever the noise left half-read is ended by a line end / frame start before the real card.
    pty.send(b"\r\n" + valid_frame)
    b.wait_for_event(type="tap", reason="granted")
    time.sleep(0.3)
    logged = taps(b)
    assert logged[-1] == (card, "granted")
    assert all(reason == "unknown_card" for _, reason in logged[:-1]), "only the real card is let in"


def flood(pty: Pty, frames: list[bytes], per_second: int, seconds: float) -> int:
    """Write ``per_second`` frames a second, cycling through ``frames``; return how many were sent."""
    sent, start, batch = 0, time.monotonic(), per_second // 100
    while (elapsed := time.monotonic() - start) < seconds:
        chunk = b"".join(frames[(sent + i) % len(frames)] for i in range(batch))
        pty.send(chunk)
        sent += batch
        time.sleep(max(0.0, sent / per_second - (time.monotonic() - start)))
    return sent


def cpu_during(work) -> tuple[float, float, object]:
    """(CPU seconds of this whole process, wall seconds, result) while ``work`` runs."""
    cpu, wall = time.process_time(), time.monotonic()
    result = work()
    return time.process_time() - cpu, time.monotonic() - wall, result


def test_a_card_resting_on_the_reader_in_a_flood_of_1000_frames_a_second_is_one_tap(branch, pty):
    """A tag left on the reader, with noise on the line: 1,000 frames a second, a third of them broken."""
    b = branch("rdm6300", dedupe_seconds=3.0)
    frames = [rdm6300_frame(int(ALLOWED_TAG)), rdm6300_frame(int(ALLOWED_TAG), check=0x00), b"\x02123\x03"]
    cpu, wall, sent = cpu_during(lambda: flood(pty, frames, per_second=1000, seconds=3.0))
    assert sent >= 2500
    assert cpu < 1.0 * wall, f"{cpu:.2f} CPU seconds in {wall:.2f} s: the reader is busy-looping"
    time.sleep(0.5)
    assert taps(b) == [(ALLOWED_TAG, "granted")]


def test_a_flood_of_1000_different_unknown_cards_a_second_opens_nothing_and_the_door_still_answers(branch, pty):
    """A broken reader or an attacker replaying numbers: every tap is decided or dropped as too late, none opens."""
    b = branch("line")
    unknown = [f"{UNKNOWN[:2]}{n:06d}\r\n".encode() for n in range(3000)]
    cpu, wall, sent = cpu_during(lambda: flood(pty, unknown, per_second=1000, seconds=3.0))
    assert sent >= 2500
    assert cpu < 1.0 * wall, f"{cpu:.2f} CPU seconds in {wall:.2f} s"
    assert not b.relay_on

    asked = time.monotonic()
    pty.send(ALLOWED.encode() + b"\r\n")
    b.wait_for_event(type="tap", reason="granted", timeout=5.0)
    assert time.monotonic() - asked < 5.0
    logged = taps(b)
    assert logged[-1] == (ALLOWED, "granted")
    assert {reason for _, reason in logged[:-1]} <= {"unknown_card"}
