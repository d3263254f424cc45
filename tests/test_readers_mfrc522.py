"""The RC522 reader, against a fake of the mfrc522 library's MFRC522 class.

The real module is never imported here: off a Raspberry Pi it refuses to import.
"""

import sys

import pytest

from device.config import ReaderConfig
from device.readers.base import CardRead, GarbledRead, ReaderError, ReaderLoop
from device.readers.mfrc522_reader import HEALTH_CHECK_POLLS, Mfrc522Reader
from test_reader_loop import Collector


class FakeSpi:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


class FakeMfrc522:
    """Answers like mfrc522.MFRC522: cards are the anticollision answers still to come."""

    PICC_REQIDL = 0x26
    MI_OK = 0
    MI_NOTAGERR = 1
    MI_ERR = 2

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.spi = FakeSpi()
        self.cards = []
        self.registers = {0x37: 0x92, 0x14: 0x83}  # a genuine v2.0 chip, antenna on

    def MFRC522_Request(self, mode):
        assert mode == self.PICC_REQIDL
        return (self.MI_OK, 0x10) if self.cards else (self.MI_ERR, None)

    def MFRC522_Anticoll(self):
        return self.MI_OK, self.cards.pop(0)

    def Read_MFRC522(self, register):
        return self.registers[register]

    def Close_MFRC522(self):
        raise AssertionError("Close_MFRC522() calls GPIO.cleanup(), which releases the door lock pins")

    def MFRC522_Read(self, block):
        raise AssertionError("the library's reading helpers busy-loop at 100 % CPU")

    read = read_id = MFRC522_Read


class Rig:
    """An Mfrc522Reader on a fake chip, with /dev/spidev faked in a temporary directory.

    registers overrides what the fake chip's registers read.
    """

    def __init__(self, tmp_path, registers=None, **settings):
        self.cfg = ReaderConfig(type="mfrc522", **settings)
        self.spidev_prefix = str(tmp_path / "spidev")
        self.spidev = tmp_path / f"spidev{self.cfg.spi_bus}.{self.cfg.spi_device}"
        self.spidev.touch()
        self.registers = registers or {}
        self.chips = []
        self.sleeps = []
        self.reader = Mfrc522Reader(self.cfg, self.make_chip, spidev_prefix=self.spidev_prefix, sleep=self.sleeps.append)

    def make_chip(self, **kwargs):
        chip = FakeMfrc522(**kwargs)
        chip.registers.update(self.registers)
        self.chips.append(chip)
        return chip

    @property
    def chip(self):
        return self.chips[-1]


@pytest.fixture
def rig(tmp_path):
    return Rig(tmp_path)


def test_no_card_gives_nothing_and_waits_the_poll_interval(tmp_path):
    rig = Rig(tmp_path, poll_interval=0.2)
    rig.reader.open()
    assert rig.reader.read() is None
    assert rig.sleeps == [0.2]


def test_card_gives_its_four_uid_bytes_at_once(rig):
    rig.reader.open()
    rig.chip.cards.append([0x04, 0xA2, 0x1B, 0x3C, 0x04 ^ 0xA2 ^ 0x1B ^ 0x3C])
    assert rig.reader.read() == CardRead(uid=bytes.fromhex("04A21B3C"))
    assert rig.sleeps == []


def test_wrong_check_byte_is_garbled(rig):
    rig.reader.open()
    rig.chip.cards.append([0x04, 0xA2, 0x1B, 0x3C, 0x00])
    with pytest.raises(GarbledRead, match="BCC"):
        rig.reader.read()


def test_card_with_a_seven_byte_uid_is_refused_not_misread(rig):
    # At cascade level 1 such a card answers 88 (cascade tag) and its first 3 UID bytes.
    rig.reader.open()
    rig.chip.cards.append([0x88, 0x04, 0x51, 0x72, 0x88 ^ 0x04 ^ 0x51 ^ 0x72])
    with pytest.raises(GarbledRead, match="7- or 10-byte UID"):
        rig.reader.read()


def test_missing_spidev_says_to_enable_spi(rig):
    rig.spidev.unlink()
    with pytest.raises(ReaderError, match=r"spidev0\.0 not found: enable SPI \(sudo raspi-config nonint do_spi 0\)"):
        rig.reader.open()
    assert rig.chips == []


def test_bus_device_and_reset_pin_are_passed_explicitly_in_bcm_numbering(tmp_path):
    rig = Rig(tmp_path, spi_bus=1, spi_device=2, reset_pin=17)
    rig.reader.open()
    assert rig.chip.kwargs == {"bus": 1, "device": 2, "pin_mode": 11, "pin_rst": 17}


def test_close_closes_only_spi_and_keeps_gpio(rig):
    rig.reader.open()
    chip = rig.chip
    rig.reader.close()
    rig.reader.close()
    assert chip.spi.closed  # and FakeMfrc522.Close_MFRC522 would have failed the test


@pytest.mark.parametrize("version", [0x00, 0xFF])
def test_chip_not_answering_is_a_reader_error_about_wiring(tmp_path, version):
    rig = Rig(tmp_path, registers={0x37: version})
    with pytest.raises(ReaderError, match="wiring"):
        rig.reader.open()
    assert rig.chip.spi.closed


def test_chip_reset_by_a_power_dip_is_noticed_while_polling(rig):
    rig.reader.open()
    rig.chip.registers[0x14] = 0x80  # TxControlReg after a reset: antenna off
    with pytest.raises(ReaderError, match="reset"):
        for _ in range(HEALTH_CHECK_POLLS):
            rig.reader.read()


def test_version_reads_the_version_register(rig):
    rig.reader.open()
    rig.chip.registers[0x37] = 0x88
    assert rig.reader.version() == 0x88


def test_without_the_library_open_is_a_reader_error(rig, monkeypatch):
    monkeypatch.setitem(sys.modules, "mfrc522", None)  # "import mfrc522" now fails
    reader = Mfrc522Reader(rig.cfg, spidev_prefix=rig.spidev_prefix)
    with pytest.raises(ReaderError, match="mfrc522 library"):
        reader.open()


def test_card_resting_on_the_reader_reaches_on_card_once(rig):
    got = Collector()
    loop = ReaderLoop(rig.reader, got.on_card, on_status=got.on_status, uid_format="decimal_reversed")
    loop.start()
    try:
        got.wait_for(lambda: got.statuses)
        resting = [0x04, 0xA2, 0x1B, 0x3C, 0x04 ^ 0xA2 ^ 0x1B ^ 0x3C]
        rig.chip.cards.extend([list(resting) for _ in range(10)] + [[0x11, 0x11, 0x11, 0x11, 0x00]])
        got.wait_for(lambda: len(got.cards) == 2)
    finally:
        loop.stop()
    assert got.cards == ["1008443908", "0286331153"]
