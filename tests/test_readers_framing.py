"""Serial framing: what arrives on the wire becomes exactly the cards that were sent."""

import tracemalloc
from functools import reduce
from operator import xor

from hypothesis import given
from hypothesis import strategies as st

from device.readers.base import CardRead, GarbledRead
from device.readers.framing import IDLE_GAP, MAX_LINE, LineFramer, Rdm6300Framer

# A frame as printed in the RDM6300 datasheet: tag 62 E3 08 6C ED, checksum 08.
DATASHEET_FRAME = b"\x02" + b"62E3086CED08" + b"\x03"
DATASHEET_UID = bytes.fromhex("62E3086CED")


def rdm_frame(uid: bytes, checksum: int | None = None) -> bytes:
    if checksum is None:
        checksum = reduce(xor, uid)
    return b"\x02" + (uid + bytes([checksum])).hex().upper().encode() + b"\x03"


def cards(results):
    return [r for r in results if isinstance(r, CardRead)]


def garbled(results):
    return [r for r in results if isinstance(r, GarbledRead)]


def feed_in_chunks(framer, data: bytes, cuts):
    results = []
    start = 0
    for cut in sorted(cuts) + [len(data)]:
        results += framer.feed(data[start:cut])
        start = cut
    return results


# --- LineFramer -------------------------------------------------------------------


def test_line_endings_cr_lf_and_crlf_each_end_one_card():
    results = LineFramer().feed(b"0001234567\r\n0001234568\n0001234569\r")
    assert results == [CardRead(text="0001234567"), CardRead(text="0001234568"), CardRead(text="0001234569")]


def test_crlf_split_between_chunks_gives_one_card():
    framer = LineFramer()
    assert framer.feed(b"12345\r") == [CardRead(text="12345")]
    assert framer.feed(b"\n") == []


def test_a_stray_byte_is_dropped_at_a_quiet_gap_instead_of_spoiling_the_next_line():
    framer = LineFramer()
    assert framer.feed(b"7") == []
    dropped = framer.gap()
    assert [str(g) for g in dropped] == [f"1 bytes without a line end, dropped after {IDLE_GAP} s of quiet"]
    assert framer.feed(b"0001234567\r\n") == [CardRead(text="0001234567")]
    assert framer.gap() == [], "nothing is left over after a whole line"


def test_the_rest_of_an_over_long_run_after_a_gap_is_the_next_card():
    framer = LineFramer()
    assert len(garbled(framer.feed(b"9" * (MAX_LINE + 5))))
    assert framer.gap() == []  # the run was reported already
    assert framer.feed(b"4444\n") == [CardRead(text="4444")]


def test_line_is_stripped_and_blank_lines_are_ignored():
    assert LineFramer().feed(b"\r\n  04A21B3C \t\r\n\n   \n") == [CardRead(text="04A21B3C")]


def test_no_card_until_the_line_ends():
    framer = LineFramer()
    assert framer.feed(b"000123") == []
    assert framer.feed(b"4567\n") == [CardRead(text="0001234567")]


def test_line_split_at_every_position_gives_the_same_cards():
    data = b"0001234567\r\n04A21B3C\r\n"
    for cut in range(len(data) + 1):
        assert cards(feed_in_chunks(LineFramer(), data, [cut])) == [
            CardRead(text="0001234567"), CardRead(text="04A21B3C")
        ], cut


def test_non_printable_bytes_make_the_line_garbled_and_the_next_line_still_reads():
    results = LineFramer().feed(b"\x00\x001234\r\n5678\r\n")
    assert len(garbled(results)) == 1
    assert cards(results) == [CardRead(text="5678")]


def test_line_of_max_length_is_accepted_and_one_longer_is_garbled():
    ok = b"7" * MAX_LINE
    results = LineFramer().feed(ok + b"\n" + ok + b"8\n")
    assert results[0] == CardRead(text=ok.decode())
    assert len(results) == 2 and isinstance(results[1], GarbledRead)


def test_over_long_run_is_reported_once_and_its_tail_is_not_a_card():
    framer = LineFramer()
    results = framer.feed(b"9" * 10_000)
    results += framer.feed(b"123\n4567\n")
    assert len(garbled(results)) == 1
    assert cards(results) == [CardRead(text="4567")]


def test_endless_input_without_line_end_does_not_grow_memory():
    framer = LineFramer()
    chunk = b"1" * 1000
    tracemalloc.start()
    try:
        for _ in range(2000):
            framer.feed(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000  # 2 MB went in


def test_garbled_message_does_not_contain_the_whole_line():
    [bad] = LineFramer().feed(b"\x07" + b"12345678901234" + b"\n")
    assert "12345678901234" not in str(bad)


def test_flood_of_1000_lines_in_one_chunk():
    data = b"".join(b"%010d\r\n" % n for n in range(1000))
    results = LineFramer().feed(data)
    assert results == [CardRead(text="%010d" % n) for n in range(1000)]


@given(st.lists(st.integers(min_value=0, max_value=2**32 - 1), max_size=20), st.data())
def test_lines_survive_any_chunking(numbers, data):
    stream = b"".join(b"%010d\r\n" % n for n in numbers)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream))))
    assert feed_in_chunks(LineFramer(), stream, cuts) == [CardRead(text="%010d" % n) for n in numbers]


# --- Rdm6300Framer ----------------------------------------------------------------


def test_datasheet_frame_gives_its_five_bytes():
    assert Rdm6300Framer().feed(DATASHEET_FRAME) == [CardRead(uid=DATASHEET_UID)]


def test_lowercase_hex_is_accepted():
    assert Rdm6300Framer().feed(DATASHEET_FRAME.lower()) == [CardRead(uid=DATASHEET_UID)]


def test_several_frames_in_one_chunk():
    other = bytes.fromhex("1A0012D687")
    assert Rdm6300Framer().feed(DATASHEET_FRAME + rdm_frame(other) + DATASHEET_FRAME) == [
        CardRead(uid=DATASHEET_UID), CardRead(uid=other), CardRead(uid=DATASHEET_UID)
    ]


def test_frame_split_at_every_position():
    data = DATASHEET_FRAME + rdm_frame(bytes.fromhex("1A0012D687"))
    for cut in range(len(data) + 1):
        results = feed_in_chunks(Rdm6300Framer(), data, [cut])
        assert results == [CardRead(uid=DATASHEET_UID), CardRead(uid=bytes.fromhex("1A0012D687"))], cut


def test_frame_split_into_single_bytes():
    framer = Rdm6300Framer()
    results = []
    for byte in DATASHEET_FRAME:
        results += framer.feed(bytes([byte]))
    assert results == [CardRead(uid=DATASHEET_UID)]


def test_bad_checksum_is_garbled():
    results = Rdm6300Framer().feed(rdm_frame(DATASHEET_UID, checksum=0x09))
    assert cards(results) == [] and len(garbled(results)) == 1


def test_non_hex_character_is_garbled_and_the_next_frame_reads():
    broken = DATASHEET_FRAME.replace(b"E3", b"G3")
    results = Rdm6300Framer().feed(broken + DATASHEET_FRAME)
    assert len(garbled(results)) == 1
    assert cards(results) == [CardRead(uid=DATASHEET_UID)]


def test_truncated_frame_then_new_stx_resynchronises():
    results = Rdm6300Framer().feed(DATASHEET_FRAME[:7] + DATASHEET_FRAME)
    assert len(garbled(results)) == 1
    assert cards(results) == [CardRead(uid=DATASHEET_UID)]


def test_early_etx_is_garbled():
    results = Rdm6300Framer().feed(b"\x0262E3\x03" + DATASHEET_FRAME)
    assert len(garbled(results)) == 1
    assert cards(results) == [CardRead(uid=DATASHEET_UID)]


def test_missing_etx_is_garbled():
    results = Rdm6300Framer().feed(DATASHEET_FRAME[:-1] + b"\x04" + DATASHEET_FRAME)
    assert len(garbled(results)) == 1
    assert cards(results) == [CardRead(uid=DATASHEET_UID)]


def test_a_frame_cut_short_by_a_quiet_gap_is_dropped():
    framer = Rdm6300Framer()
    assert framer.feed(DATASHEET_FRAME[:5]) == []
    assert [str(g) for g in framer.gap()] == [f"frame cut short after 4 of 12 characters, dropped after {IDLE_GAP} s of quiet"]
    assert framer.gap() == []
    assert framer.feed(DATASHEET_FRAME) == [CardRead(uid=DATASHEET_UID)]


def test_bytes_outside_frames_are_skipped():
    noise = b"\x00\xff\r\n0123456789ABCDEF\x03\x03"
    assert Rdm6300Framer().feed(noise + DATASHEET_FRAME + noise + DATASHEET_FRAME + noise) == [
        CardRead(uid=DATASHEET_UID), CardRead(uid=DATASHEET_UID)
    ]


def test_garbled_frame_message_does_not_contain_the_id():
    [bad] = Rdm6300Framer().feed(rdm_frame(DATASHEET_UID, checksum=0x09))
    assert "62E3086CED" not in str(bad).upper()


def test_flood_of_1000_frames_in_one_chunk():
    uids = [n.to_bytes(5, "big") for n in range(1000)]
    results = Rdm6300Framer().feed(b"".join(rdm_frame(uid) for uid in uids))
    assert results == [CardRead(uid=uid) for uid in uids]


@given(
    st.lists(st.binary(min_size=5, max_size=5), max_size=10),
    st.binary(max_size=20).filter(lambda noise: b"\x03" not in noise),
    st.data(),
)
def test_frames_survive_any_chunking_after_noise(uids, noise, data):
    # Noise may start a frame with an STX; without an ETX it cannot finish one, and
    # the real STX that follows starts over.
    stream = noise + b"".join(rdm_frame(uid) for uid in uids)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream))))
    assert cards(feed_in_chunks(Rdm6300Framer(), stream, cuts)) == [CardRead(uid=uid) for uid in uids]
