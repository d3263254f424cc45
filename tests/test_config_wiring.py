"""check-config reserves the pins and ports that readers and displays take without naming them (issue 14, item 7)."""

import pytest

from device.config import load
from tests.test_config import BOOTH, ENTRANCE, HEAD, problems_in, write

RC522 = '[doors.reader]\ntype = "mfrc522"\n'
SSD1306 = '[doors.display]\ntype = "ssd1306"\n'


def serial(part: str, device: str) -> str:
    return f'[doors.{part}]\ntype = "serial"\ndevice = "{device}"\n'


CLASHES = [
    pytest.param(
        HEAD + ENTRANCE + RC522 + BOOTH.replace("lock_pin = 5", "lock_pin = 10"),
        ["doors[1].lock_pin = 10: GPIO10 is already used by the RC522 of doors[0].reader (SPI bus 0)"],
        id="lock-on-spi0-mosi",
    ),
    pytest.param(
        HEAD + ENTRANCE + "contact_pin = 8\n" + RC522,
        ["doors[0].contact_pin = 8: GPIO8 is already used by the RC522 of doors[0].reader (SPI bus 0)"],
        id="contact-on-the-rc522-chip-select",
    ),
    pytest.param(
        HEAD + ENTRANCE + "exit_button_pin = 7\n" + RC522,
        ["doors[0].exit_button_pin = 7: GPIO7 is already used by the RC522 of doors[0].reader (SPI bus 0)"],
        id="button-on-spi0-ce1-which-the-system-takes-too",
    ),
    pytest.param(
        HEAD + ENTRANCE + RC522 + 'spi_bus = 1\nspi_device = 2\n' + BOOTH.replace("lock_pin = 5", "lock_pin = 16"),
        ["doors[1].lock_pin = 16: GPIO16 is already used by the RC522 of doors[0].reader (SPI bus 1)"],
        id="lock-on-the-spi1-chip-select",
    ),
    pytest.param(
        HEAD + ENTRANCE + serial("reader", "/dev/serial0") + BOOTH.replace("lock_pin = 5", "lock_pin = 14"),
        ["doors[1].lock_pin = 14: GPIO14 is already used by doors[0].reader on /dev/serial0 (the GPIO UART)"],
        id="lock-on-the-uart-tx",
    ),
    pytest.param(
        HEAD + ENTRANCE + "exit_button_pin = 15\n" + serial("reader", "/dev/ttyAMA0"),
        ["doors[0].exit_button_pin = 15: GPIO15 is already used by doors[0].reader on /dev/ttyAMA0 (the GPIO UART)"],
        id="button-on-the-uart-rx",
    ),
    pytest.param(
        HEAD + ENTRANCE.replace("lock_pin = 17", "lock_pin = 2") + SSD1306,
        ["doors[0].lock_pin = 2: GPIO2 is already used by the SSD1306 of doors[0].display (I2C bus 1)"],
        id="lock-on-i2c-sda",
    ),
    pytest.param(
        HEAD + ENTRANCE + serial("reader", "/dev/ttyUSB0") + serial("keypad", "/dev/ttyUSB0"),
        ['doors[0].keypad = "/dev/ttyUSB0": the same port as doors[0].reader; one port serves one device'],
        id="reader-and-keypad-on-one-port",
    ),
    pytest.param(
        HEAD + ENTRANCE + serial("reader", "/dev/serial0") + BOOTH + serial("reader", "/dev/ttyAMA0"),
        ['doors[1].reader = "/dev/ttyAMA0": already the reader of doors[0]; each door needs its own reader'],
        id="one-uart-under-two-names",
    ),
    pytest.param(
        HEAD + ENTRANCE + serial("display", "/dev/ttyS0") + BOOTH + serial("keypad", "/dev/serial0"),
        ['doors[1].keypad = "/dev/serial0": the same port (the GPIO UART) as doors[0].display; one port serves one device'],
        id="display-and-keypad-on-the-uart",
    ),
    pytest.param(
        HEAD + ENTRANCE + SSD1306 + BOOTH + SSD1306,
        ['doors[1].display = "i2c1@0x3c": the same port as doors[0].display; one port serves one device'],
        id="two-displays-at-one-i2c-address",
    ),
]


@pytest.mark.parametrize("text, expected", CLASHES)
def test_a_pin_or_port_taken_by_a_bus_is_reported(tmp_path, text, expected):
    assert problems_in(write(tmp_path, text)) == expected


def test_one_port_under_a_link_is_one_port(tmp_path):
    (tmp_path / "ttyUSB7").touch()
    (tmp_path / "usb-reader-link").symlink_to(tmp_path / "ttyUSB7")
    text = HEAD + ENTRANCE + serial("reader", tmp_path / "usb-reader-link") + serial("keypad", tmp_path / "ttyUSB7")
    assert problems_in(write(tmp_path, text)) == [
        f'doors[0].keypad = "{tmp_path / "ttyUSB7"}": the same port as doors[0].reader; one port serves one device'
    ]


def test_a_chip_select_of_spi1_that_no_reader_uses_stays_free(tmp_path):
    """The default lock pin, GPIO17, is SPI1's second chip select; an RC522 on SPI1's first leaves it alone."""
    load(write(tmp_path, HEAD + ENTRANCE + RC522 + "spi_bus = 1\n"))


def test_devices_on_one_bus_share_its_pins(tmp_path):
    """Two RC522s on SPI0's two chip selects and two displays at different I2C addresses are all wired right."""
    text = (HEAD + ENTRANCE + RC522 + SSD1306 + BOOTH + RC522 + "spi_device = 1\nreset_pin = 24\n"
            + SSD1306 + "i2c_address = 0x3D\n")
    config = load(write(tmp_path, text))
    assert [door.reader.spi_device for door in config.doors] == [0, 1]
