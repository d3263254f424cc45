"""A database that cannot be written when the device starts (issue 14, item 4).

The real ``omaovi device`` process, its doors on mock pins and its reader on a
pty, over a database on a read-only bind mount or left owned by root. Exiting
would make systemd restart it forever with every door shut; it must instead start
in the storage-failed mode: staff cards open, everyone else hears "unavailable",
the events wait in memory, and the warning is in the log and in the status that
``systemctl status`` shows. Mounting, chown and dropping capabilities need root,
which the test machine gives.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from device import staff_copy
from device.cards import card_key
from device.policy import Patron
from device.schedule import Period
from device.store import Store
from tests.simulated import child_env
from tests.test_systemd import NotifySocket

ROOT = Path(__file__).resolve().parent.parent
KEY = b"storage-at-start-consortium-key!"
ALLOWED, STAFF = "10000001", "90000001"
NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a bind mount, chown and setpriv")


def config_text(database: Path, tty: str) -> str:
    return f"""\
branch = "kallio"
database = "{database}"
consortium_key_file = "consortium.key"

[cards]
uid_format = "decimal"

[[doors]]
id = "entrance"
kind = "entrance"
lock_pin = 17

[doors.reader]
type = "serial"
device = "{tty}"
framing = "line"
"""


def make_database(path: Path) -> None:
    """A branch open to self-service around the clock, with one patron and one staff card."""
    store = Store(path)
    store.set_weekly({d: (Period(0, 1440, "self_service"),) for d in range(7)})
    now = datetime.now(timezone.utc)
    store.put_patrons([Patron(card_key=card_key(KEY, ALLOWED), self_service=True, valid_until=date(2099, 1, 1),
                              age_ok_from=date(2000, 1, 1), fetched_at=now)], source="test")
    store.add_staff_card(card_key(KEY, STAFF), "caretaker", "test")
    store.close()


class RunningDevice:
    """``omaovi device`` with its stderr collected line by line and a pty as its reader."""

    def __init__(self, config: Path, reader_fd: int, notify: NotifySocket, without_capabilities: bool = False):
        env = child_env(
            PATH=os.environ.get("PATH", "/usr/bin:/bin"), GPIOZERO_PIN_FACTORY="mock", NOTIFY_SOCKET=str(notify.path),
        )
        self.reader_fd = reader_fd
        self.notify = notify
        self.lines: list[str] = []
        dropped = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if without_capabilities else []
        self.process = subprocess.Popen(
            [*dropped, sys.executable, "-m", "device.cli", "device", "-c", str(config)], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self._reading = threading.Thread(target=self._read, daemon=True)
        self._reading.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    def ready(self) -> str:
        """The STATUS= that came with READY=1."""
        return self.notify.wait_for("READY=1", timeout=30)[-1]

    def wait_for_status(self, text: str, timeout: float = 10) -> None:
        """A STATUS= sent to systemd, as `systemctl status` shows it, that says ``text``."""
        deadline, seen = time.monotonic() + timeout, []
        while time.monotonic() < deadline:
            got = self.notify.receive(max(0.01, deadline - time.monotonic()))
            if got is None:
                continue
            if text in got:
                return
            seen.append(got)
        raise AssertionError(f"no status saying {text!r} within {timeout} s; got {seen}")

    def swipe(self, number: str, expect: str) -> None:
        os.write(self.reader_fd, number.encode() + b"\r\n")
        self.wait_for_line(expect)

    def wait_for_line(self, text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"no {text!r} in the device's log:\n{''.join(self.lines)}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reading.join(5)
        self.process.stderr.close()


@contextlib.contextmanager
def device(config: Path, reader_fd: int, notify: NotifySocket, without_capabilities: bool = False):
    running = RunningDevice(config, reader_fd, notify, without_capabilities)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def reader():
    """The pty the device reads cards from: (the test's end, the device's path)."""
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def events_in(database: Path) -> list[tuple[str, str | None]]:
    with contextlib.closing(Store(database)) as store:
        return [(e["type"], e["reason"]) for e in reversed(store.events(limit=100))]


def test_a_read_only_file_system_at_start_lets_staff_in_and_keeps_the_events(tmp_path, reader):
    master, tty = reader
    data, mounted = tmp_path / "data", tmp_path / "mounted"
    data.mkdir()
    mounted.mkdir()
    make_database(data / "omaovi.db")
    (tmp_path / "consortium.key").write_bytes(KEY)
    config = tmp_path / "omaovi.toml"
    config.write_text(config_text(mounted / "omaovi.db", tty))
    notify = NotifySocket(tmp_path / "notify")
    subprocess.run(["mount", "--bind", str(data), str(mounted)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mounted)], check=True)
        with device(config, master, notify) as door:
            status = door.ready()
            assert "STATUS=STORAGE FAILED since" in status and "only staff cards open" in status
            door.wait_for_line("STORAGE FAILED at start: cannot open")
            door.swipe(STAFF, "granted=True reason=staff")
            door.swipe(ALLOWED, "granted=False reason=unavailable")
            door.wait_for_status("only staff cards open, 2 events wait in memory")

            # The file system is writable again: the device notices by itself and writes what waited.
            subprocess.run(["mount", "-o", "remount,bind,rw", str(mounted)], check=True)
            door.wait_for_line("can be opened for writing now", timeout=30)
            deadline = time.monotonic() + 15
            while ("storage_recovered", None) not in events_in(data / "omaovi.db"):
                assert time.monotonic() < deadline, events_in(data / "omaovi.db")
                time.sleep(0.2)
            notify.wait_for("STATUS=branch kallio, doors entrance", timeout=10)
        kinds = events_in(data / "omaovi.db")
        assert kinds[:4] == [("storage_failed", None), ("tap", "staff"), ("tap", "unavailable"), ("storage_recovered", None)]
    finally:
        subprocess.run(["umount", str(mounted)], check=False)
        notify.close()


def test_a_database_the_device_cannot_read_still_opens_for_staff_from_the_copy(tmp_path, reader):
    """The database belongs to another user with mode 0600 (root restored it from a
    backup, say), so the device cannot even read it. The staff card copy it kept
    beside the database still lets the caretaker in. The device runs as root without
    capabilities: root's own files stay its own, but another user's 0600 file is as
    closed to it as to the omaovi user."""
    master, tty = reader
    database = tmp_path / "omaovi.db"
    make_database(database)
    (tmp_path / "consortium.key").write_bytes(KEY)
    config = tmp_path / "omaovi.toml"
    config.write_text(config_text(database, tty))
    notify = NotifySocket(tmp_path / "notify")
    try:
        with device(config, master, notify, without_capabilities=True) as door:  # an ordinary start keeps the copy
            door.ready()
        assert staff_copy.load(staff_copy.copy_path(database)) == {card_key(KEY, STAFF)}

        os.chown(database, NOBODY, NOBODY)
        database.chmod(0o600)
        with device(config, master, notify, without_capabilities=True) as door:
            assert "STATUS=STORAGE FAILED" in door.ready()
            door.wait_for_line("cannot read it either")
            door.swipe(STAFF, "granted=True reason=staff")
            door.swipe(ALLOWED, "granted=False reason=unavailable")
    finally:
        notify.close()
