"""A live branch for the browser tests: the device loop on mock pins and the staff
page served by waitress, both on one database."""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from gpiozero.pins.mock import MockFactory

ROOT = Path(__file__).resolve().parent.parent.parent
#: Screenshots for people to look at; git-ignored.
ARTIFACTS = ROOT / "test-artifacts"
sys.path.insert(0, str(ROOT / "tests"))

from webclient import PASSWORDS, write_branch  # noqa: E402

from admin_web import accounts  # noqa: E402
from admin_web.serve import make_server  # noqa: E402
from device.controller import Controller  # noqa: E402
from device.store import Store  # noqa: E402


class LiveBranch:
    def __init__(self, directory: Path, extra: str = ""):
        """``extra``: TOML added to the test branch's config (after its last door)."""
        self.config = write_branch(directory, extra)
        store = Store(self.config.database)
        for role, password in PASSWORDS.items():
            accounts.add_user(store, role, password, role)
        store.close()
        self.device_store = Store(self.config.database, durable=True)
        self.pins = MockFactory()
        self.controller = Controller(self.config, self.device_store, consortium_key=b"k" * 32,
                                     pin_factory=self.pins, start_readers=False)
        self._stop = threading.Event()
        self._loop = threading.Thread(target=self.controller.run, args=(self._stop,), name="browser-device", daemon=True)
        self._loop.start()
        for door in self.config.doors:
            if door.contact_pin is not None:
                self.pins.pin(door.contact_pin).drive_low()  # doors start closed
        self.server = make_server(self.config, host="127.0.0.1", port=0)
        self._web = threading.Thread(target=self.server.run, name="browser-web", daemon=True)
        self._web.start()
        self.url = f"http://127.0.0.1:{self.server.effective_port}"

    @contextmanager
    def store(self):
        """A connection of the test's own, as the staff page or sync has: the device's connection
        belongs to its loop thread, which writes its heartbeat and reader counts at any moment."""
        store = Store(self.config.database)
        try:
            yield store
        finally:
            store.close()

    def lock_pin_active(self, door_id: str) -> bool:
        door = self.config.door(door_id)
        return self.pins.pin(door.lock_pin).state == (1 if door.lock_active_high else 0)

    def close(self):
        self.server.close()
        self._stop.set()
        self._loop.join(timeout=5)
        self.controller.close()
        self.device_store.close()


def log_in(page, live_branch, username: str = "admin") -> None:
    page.goto(live_branch.url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORDS[username])
    with page.expect_navigation():
        page.click("button[type=submit].button-primary")
    assert "/login" not in page.url, "the login failed"
