"""Patron messages in three languages, on a serial display (pty), an SSD1306 (luma's dummy) and HTTP."""

import json
import os
import select
import threading
import time
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest
from gpiozero.pins.mock import MockFactory

from device import messages
from device.cards import card_key
from device.config import Config, DisplayConfig, DoorConfig
from device.controller import Controller
from device.display import Display, HttpScreen, Oled
from device.policy import Patron, Reason, Reservation
from device.schedule import Period
from device.store import Store

KEY = b"display-test-consortium-key-0000"
HELSINKI = ZoneInfo("Europe/Helsinki")


def test_every_reason_and_prompt_has_a_message_in_every_language():
    keys = {r.value for r in Reason} | {messages.ENTER_PIN, messages.PIN_LOCKED, messages.RESERVATION_STARTS,
                                        messages.CLOSING, messages.SELF_SERVICE_STARTS}
    assert set(messages.CATALOGUE) == keys
    for texts in messages.CATALOGUE.values():
        assert set(texts) == set(messages.LANGUAGES) and all(t.strip() for t in texts.values())


@pytest.mark.parametrize("reason, fi, sv, en", [
    (Reason.CLOSED, "Omatoimiaika on päättynyt", "Meröppet har stängt", "Self-service hours are over"),
    (Reason.WRONG_PIN, "Väärä PIN-koodi", "Fel PIN-kod", "Wrong PIN"),
    (messages.ENTER_PIN, "Syötä PIN-koodi", "Ange PIN-kod", "Enter your PIN"),
])
def test_the_message_per_language(reason, fi, sv, en):
    assert messages.message(reason) == {"fi": fi, "sv": sv, "en": en}


def test_a_booth_card_that_is_early_is_told_when_its_reservation_starts():
    at = datetime(2026, 11, 25, 14, 0, tzinfo=HELSINKI)
    assert messages.tap_message(Reason.NO_RESERVATION, at) == {
        "fi": "Varaus alkaa klo 14.00", "sv": "Bokningen börjar kl. 14.00", "en": "Reservation starts at 14:00"}
    assert messages.tap_message(Reason.NO_RESERVATION)["fi"] == "Ei voimassa olevaa varausta"
    assert messages.tap_message(Reason.BLOCKED)["fi"].startswith("Kortti ei kelpaa omatoimikirjastoon")


def read_until_blank_line(fd, timeout=3.0) -> list[str]:
    data = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in data:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no whole message on the display; got {data!r}")
        data += os.read(fd, 1024)
    return data.split(b"\r\n\r\n")[0].decode("utf-8").split("\r\n")


@pytest.fixture
def door_with_display(tmp_path):
    master, slave = os.openpty()
    config = Config(
        path=tmp_path / "omaovi.toml", branch="test", timezone="Europe/Helsinki",
        database=tmp_path / "omaovi.db", consortium_key_file=tmp_path / "key",
        doors=(
            DoorConfig(id="entrance", kind="entrance", lock_pin=17,
                       display=DisplayConfig(type="serial", device=os.ttyname(slave), languages=("sv", "fi"))),
            DoorConfig(id="booth", kind="booth", resource="box-1", lock_pin=5,
                       display=DisplayConfig(type="serial", device="/dev/nonexistent-omaovi-display")),
        ),
    )
    store = Store(config.database)
    store.set_weekly({d: (Period(0, 1440, "closed"),) for d in range(7)})
    controller = Controller(config, store, consortium_key=KEY, pin_factory=MockFactory(), start_readers=False)
    yield controller, store, master
    controller.close()
    store.close()
    os.close(master)
    os.close(slave)


def test_a_refused_tap_shows_its_reason_and_writes_the_text_into_the_event(door_with_display):
    controller, store, master = door_with_display
    controller.tap("entrance", "10000001")
    assert read_until_blank_line(master) == ["Meröppet har stängt", "Omatoimiaika on päättynyt"]
    [event] = store.events()
    assert json.loads(event["detail"])["message"] == "Omatoimiaika on päättynyt"


def test_a_broken_display_does_not_stop_or_delay_the_door(door_with_display, caplog):
    controller, store, _ = door_with_display
    now = datetime.now(timezone.utc)
    store.put_reservations([Reservation("r-1", "box-1", card_key(KEY, "10000006"), now - timedelta(minutes=1), now + timedelta(hours=1))])
    started = time.monotonic()
    result = controller.tap("booth", "10000006")  # its display does not exist
    assert result.decision.granted and time.monotonic() - started < 1.0
    assert controller.doors["booth"].unlocked
    deadline = time.monotonic() + 2
    while "serial display failed" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "serial display failed" in caplog.text


def test_the_oled_draws_every_language_wrapped_to_its_width():
    from luma.core.device import dummy

    screen = dummy(width=128, height=64, mode="1")
    oled = Oled(DisplayConfig(type="ssd1306"), make_device=lambda cfg: screen)
    oled.write(["Kortti ei kelpaa omatoimikirjastoon"])
    top, bottom = screen.image.crop((0, 0, 128, 12)), screen.image.crop((0, 12, 128, 24))
    assert top.getbbox() is not None and bottom.getbbox() is not None, "two lines drawn"
    assert screen.image.crop((0, 24, 128, 64)).getbbox() is None


def test_an_http_display_gets_the_message_as_json():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        import requests

        session = requests.Session()
        session.trust_env = False
        cfg = DisplayConfig(type="http", url=f"http://127.0.0.1:{server.server_port}/message")
        display = Display(cfg, "entrance", opener=lambda c: HttpScreen(c, session))
        display.show(messages.message(messages.ENTER_PIN))
        display.close()
        assert received == [{"message": {"fi": "Syötä PIN-koodi", "sv": "Ange PIN-kod", "en": "Enter your PIN"}}]
    finally:
        server.shutdown()
