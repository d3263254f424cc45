"""The RC522 (MFRC522) 13.56 MHz reader on the Raspberry Pi's SPI bus.

The mfrc522 package does the register work, but parts of it must be avoided:
- importing it fails off a Raspberry Pi (RPi.GPIO refuses), so it is imported only
  when the reader opens;
- its read() and read_id() poll in a tight loop at 100 % CPU, so this reader polls
  with MFRC522_Request/MFRC522_Anticoll and sleeps between polls;
- with no reset pin given it picks one from the GPIO numbering mode (GPIO15, the
  UART RX, once gpiozero has set BCM), so the mode and the pin are always passed;
- its Close_MFRC522() calls GPIO.cleanup(), which would release the pins gpiozero
  holds for the door locks, so only the SPI handle is closed.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from device.config import ReaderConfig
from device.readers.base import CardRead, GarbledRead, ReaderError

SPIDEV_PREFIX = "/dev/spidev"

#: RPi.GPIO's BCM numbering, the numbering of every pin in the configuration.
_GPIO_BCM = 11

VERSION_REG = 0x37
_TX_CONTROL_REG = 0x14
_ANTENNA_ON = 0x03
#: The first UID byte of a 7- or 10-byte UID at cascade level 1.
_CASCADE_TAG = 0x88

#: Every this many polls (about 7 s) the chip is checked: SPI gives no error when
#: the module is unplugged or was reset by a power dip, it just stops seeing cards.
HEALTH_CHECK_POLLS = 50


def _library_reader(**kwargs: Any) -> Any:
    try:
        from mfrc522 import MFRC522
    except (ImportError, RuntimeError) as exc:
        raise ReaderError(
            f"the mfrc522 library cannot be used here ({exc}). It needs a Raspberry Pi with RPi.GPIO "
            "(on a Raspberry Pi 5 install rpi-lgpio in its place)"
        ) from exc
    return MFRC522(**kwargs)


class Mfrc522Reader:
    """Polls an RC522 for 4-byte UIDs.

    factory builds the chip driver from the keyword arguments of mfrc522.MFRC522
    (the real class by default); tests pass a fake. sleep waits between polls.
    """

    def __init__(
        self,
        cfg: ReaderConfig,
        factory: Callable[..., Any] | None = None,
        *,
        spidev_prefix: str = SPIDEV_PREFIX,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.name = f"mfrc522 spi{cfg.spi_bus}.{cfg.spi_device}"
        self._cfg = cfg
        self._factory = factory or _library_reader
        self._spidev = f"{spidev_prefix}{cfg.spi_bus}.{cfg.spi_device}"
        self._sleep = sleep
        self._chip: Any = None
        self._polls = 0

    def open(self) -> None:
        if not os.path.exists(self._spidev):
            raise ReaderError(f"{self._spidev} not found: enable SPI (sudo raspi-config nonint do_spi 0) and reboot")
        try:
            self._chip = self._factory(
                bus=self._cfg.spi_bus, device=self._cfg.spi_device, pin_mode=_GPIO_BCM, pin_rst=self._cfg.reset_pin
            )
        except PermissionError as exc:
            raise ReaderError(f"no permission for {self._spidev} or the GPIO pins ({exc}): add the omaovi user to the spi and gpio groups") from exc
        except (OSError, RuntimeError) as exc:
            raise ReaderError(f"cannot start the RC522 on {self._spidev}: {exc}") from exc
        self._polls = 0
        try:
            self._check_chip()
        except ReaderError:
            self.close()
            raise

    def read(self) -> CardRead | None:
        self._polls += 1
        if self._polls % HEALTH_CHECK_POLLS == 0:
            self._check_chip()
        chip = self._chip
        status, _ = chip.MFRC522_Request(chip.PICC_REQIDL)
        if status == chip.MI_OK:
            status, uid = chip.MFRC522_Anticoll()
            if status == chip.MI_OK:
                return _card(uid)
        self._sleep(self._cfg.poll_interval)
        return None

    def version(self) -> int:
        """The chip's VersionReg: 0x91 or 0x92 for a genuine MFRC522, 0x88 for a common clone,
        0x00 or 0xFF when nothing answers on the SPI bus (wiring)."""
        return self._chip.Read_MFRC522(VERSION_REG)

    def close(self) -> None:
        if self._chip is not None:
            chip, self._chip = self._chip, None
            chip.spi.close()

    def _check_chip(self) -> None:
        """Raise ReaderError if the chip stopped answering or lost its set-up.

        The loop then reopens the reader, which initialises the chip again.
        """
        version = self.version()
        if version in (0x00, 0xFF):
            raise ReaderError(
                f"the RC522 on {self._spidev} does not answer (version register 0x{version:02X}): "
                "check its wiring (3.3 V, GND, SDA, SCK, MOSI, MISO, RST)"
            )
        if self._chip.Read_MFRC522(_TX_CONTROL_REG) & _ANTENNA_ON != _ANTENNA_ON:
            raise ReaderError(f"the RC522 on {self._spidev} was reset (antenna off), probably by a power dip")


def _card(uid: list[int]) -> CardRead:
    if len(uid) != 5:
        raise GarbledRead(f"anticollision answer of {len(uid)} bytes, expected 5")
    if uid[0] == _CASCADE_TAG:
        raise GarbledRead("the card has a 7- or 10-byte UID; the RC522 reader reads only 4-byte UIDs")
    if uid[4] != uid[0] ^ uid[1] ^ uid[2] ^ uid[3]:
        raise GarbledRead("UID check byte (BCC) does not match")
    return CardRead(uid=bytes(uid[:4]))
