"""The patron display at a door: what the decision means, in the patron's languages.

Three kinds, each optional and each behind a worker thread, so a display that is
unplugged, hung on the I2C bus or slow to answer over HTTP never delays a door:

- ``ssd1306``: a 128×64 I2C OLED, drawn with luma.oled (imported only when one
  is opened, because it needs the I2C bus of a Pi);
- ``serial``: a line display on a serial port, one line per language and an empty
  line after each message;
- ``http``: a JSON POST ``{"message": {"fi": …, "sv": …, "en": …}}`` to a URL,
  for a screen driven by a browser or another program.

A failed write is logged and the device is opened afresh for the next message.
"""

from __future__ import annotations

import logging
import textwrap
from typing import Callable

from device.background import Worker
from device.config import DisplayConfig

log = logging.getLogger("omaovi.display")

#: Characters per line of luma's default font on a 128-pixel-wide OLED.
OLED_COLUMNS = 21
#: Pixels per line: luma's default font is 11 pixels high with its descenders.
OLED_LINE_HEIGHT = 12
HTTP_TIMEOUT_SECONDS = 2.0


class SerialLines:
    def __init__(self, cfg: DisplayConfig):
        import serial

        self._port = serial.serial_for_url(cfg.device, baudrate=cfg.baudrate, write_timeout=1)

    def write(self, texts: list[str]) -> None:
        self._port.write(("\r\n".join(texts) + "\r\n\r\n").encode("utf-8"))
        self._port.flush()

    def close(self) -> None:
        self._port.close()


class Oled:
    """An SSD1306: each language's text wrapped to the width, as much as fits on the screen."""

    def __init__(self, cfg: DisplayConfig, make_device: Callable | None = None):
        self._device = (make_device or _ssd1306)(cfg)

    def write(self, texts: list[str]) -> None:
        from luma.core.render import canvas

        lines = [line for text in texts for line in textwrap.wrap(text, OLED_COLUMNS)]
        with canvas(self._device) as draw:
            for row, line in enumerate(lines[: self._device.height // OLED_LINE_HEIGHT]):
                draw.text((0, row * OLED_LINE_HEIGHT), line, fill="white")

    def close(self) -> None:
        self._device.cleanup()


def _ssd1306(cfg: DisplayConfig):
    from luma.core.interface.serial import i2c
    from luma.oled.device import ssd1306

    return ssd1306(i2c(port=cfg.i2c_port, address=cfg.i2c_address))


class HttpScreen:
    def __init__(self, cfg: DisplayConfig, session=None):
        import requests

        self._url = cfg.url
        self._languages = cfg.languages
        self._session = session or requests.Session()

    def write(self, texts: list[str]) -> None:
        response = self._session.post(
            self._url, json={"message": dict(zip(self._languages, texts))}, timeout=HTTP_TIMEOUT_SECONDS,
            allow_redirects=False,
        )
        response.raise_for_status()

    def close(self) -> None:
        self._session.close()


KINDS = {"ssd1306": Oled, "serial": SerialLines, "http": HttpScreen}


class Display:
    """A door's display, written from a worker thread; ``opener`` builds the device (tests inject one)."""

    def __init__(self, cfg: DisplayConfig, door_id: str, opener: Callable[[DisplayConfig], object] | None = None):
        self.cfg = cfg
        self._open = opener or KINDS[cfg.type]
        self._device = None
        self._worker = Worker(f"display {door_id}")

    def show(self, texts: dict[str, str]) -> None:
        """Returns at once; the text appears when the display has taken it."""
        lines = [texts[lang] for lang in self.cfg.languages]
        self._worker.submit(lambda: self._write(lines))

    def _write(self, lines: list[str]) -> None:
        try:
            if self._device is None:
                self._device = self._open(self.cfg)
            self._device.write(lines)
        except Exception as exc:  # noqa: BLE001 - any display failure only costs this message
            log.error("%s display failed (%s: %s); it is opened again for the next message",
                      self.cfg.type, type(exc).__name__, exc)
            self._drop()

    def _drop(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            try:
                device.close()
            except Exception:  # noqa: BLE001
                pass

    def close(self) -> None:
        self._worker.close()
        self._drop()
