"""The device under systemd: readiness, the watchdog and journal fields, on real AF_UNIX sockets."""

import contextlib
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from device.config import Config, DoorConfig
from device.controller import Controller
from device.journald import JournalHandler, stderr_is_journal
from device.store import Store
from device.systemd_notify import LoopNotifier, Notifier, watchdog_interval

ROOT = Path(__file__).resolve().parent.parent
KEY = b"systemd-test-consortium-key-0123"


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket, here in a temporary directory."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def receive(self, timeout: float) -> str | None:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536).decode()
        except (socket.timeout, BlockingIOError):
            return None

    def wait_for(self, message: str, timeout: float = 5.0) -> list[str]:
        """Everything received up to and including ``message``."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.receive(max(0.01, deadline - time.monotonic()))
            if got is not None:
                seen.append(got)
                if message in got.splitlines():
                    return seen
        raise AssertionError(f"no {message!r} within {timeout} s; got {seen}")

    def drain(self) -> None:
        while self.receive(0.001) is not None:
            pass

    def close(self):
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path):
    s = NotifySocket(tmp_path / "notify")
    yield s
    s.close()


def test_notifier_does_nothing_without_notify_socket():
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False and notifier.stopping() is False


def test_notifier_sends_to_a_path_socket(notify_socket):
    notifier = Notifier({"NOTIFY_SOCKET": str(notify_socket.path)})
    assert notifier.ready("branch kallio")
    assert notify_socket.receive(1) == "READY=1\nSTATUS=branch kallio"
    assert notifier.stopping()
    assert notify_socket.receive(1) == "STOPPING=1"
    notifier.close()


def test_notifier_sends_to_an_abstract_socket():
    name = f"omaovi-test-{os.getpid()}-{time.monotonic_ns()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(b"\0" + name.encode())
    listener.settimeout(1)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.watchdog()
        assert listener.recv(100) == b"WATCHDOG=1"
        notifier.close()
    finally:
        listener.close()


def test_a_vanished_socket_does_not_raise(tmp_path):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled and notifier.watchdog() is False


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(environ, expected):
    assert watchdog_interval(environ) == expected


def test_loop_notifier_sends_ready_once_and_pings_at_most_every_interval(notify_socket):
    now = [100.0]
    tick = LoopNotifier(Notifier({"NOTIFY_SOCKET": str(notify_socket.path)}), 5.0, clock=lambda: now[0])
    tick()
    assert notify_socket.receive(1) == "READY=1"
    assert notify_socket.receive(1) == "WATCHDOG=1"
    for _ in range(10):  # ten ticks within the interval: no more pings
        now[0] += 0.4
        tick()
    assert notify_socket.receive(0.05) is None
    now[0] += 1.0
    tick()
    assert notify_socket.receive(1) == "WATCHDOG=1"


def _controller(tmp_path):
    door = DoorConfig(id="entrance", kind="entrance", lock_pin=17)
    cfg = Config(
        path=tmp_path / "omaovi.toml", branch="test", timezone="Europe/Helsinki",
        database=tmp_path / "omaovi.db", consortium_key_file=tmp_path / "key", doors=(door,),
    )
    store = Store(cfg.database)
    return Controller(cfg, store, consortium_key=KEY, pin_factory=MockFactory(), start_readers=False), store


def test_a_stalled_device_loop_stops_the_watchdog_pings(tmp_path, notify_socket):
    """The pings come from the loop itself, so systemd sees a hung loop and restarts the device."""
    controller, store = _controller(tmp_path)
    interval = watchdog_interval({"WATCHDOG_USEC": "200000"})  # ping every 0.1 s
    on_tick = LoopNotifier(Notifier({"NOTIFY_SOCKET": str(notify_socket.path)}), interval)
    stop = threading.Event()
    loop = threading.Thread(target=controller.run, args=(stop,), kwargs={"on_tick": on_tick}, daemon=True)
    loop.start()
    try:
        notify_socket.wait_for("READY=1")
        notify_socket.wait_for("WATCHDOG=1")
        notify_socket.wait_for("WATCHDOG=1")

        gate, stalled = threading.Event(), threading.Event()

        def hang():
            stalled.set()
            gate.wait(10)

        blocker = threading.Thread(target=controller.call, args=(hang, 10), daemon=True)
        blocker.start()
        assert stalled.wait(2)
        notify_socket.drain()  # a ping may have been on its way before the stall
        silent_until = time.monotonic() + 6 * interval
        while time.monotonic() < silent_until:
            assert notify_socket.receive(silent_until - time.monotonic()) is None, "pinged while the loop was stuck"

        gate.set()
        blocker.join(2)
        notify_socket.wait_for("WATCHDOG=1", timeout=2)
    finally:
        stop.set()
        loop.join(2)
        controller.close()
        store.close()


DEVICE_CONFIG = """\
branch = "kallio"
database = "omaovi.db"
consortium_key_file = "consortium.key"

[[doors]]
id = "entrance"
kind = "entrance"
lock_pin = 17
"""


@contextlib.contextmanager
def started_as_systemd(args: list[str], env: dict):
    """An ``omaovi`` command run as its unit would run it; killed if the test leaves it running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "device.cli", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def test_omaovi_device_reports_ready_pings_and_stopping_to_systemd(tmp_path, notify_socket):
    """The real command, as systemd starts it: Type=notify with WatchdogSec=."""
    (tmp_path / "omaovi.toml").write_text(DEVICE_CONFIG)
    (tmp_path / "consortium.key").write_bytes(KEY)
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_socket.path), WATCHDOG_USEC="400000", GPIOZERO_PIN_FACTORY="mock")
    env.pop("WATCHDOG_PID", None)
    with started_as_systemd(["device", "-c", str(tmp_path / "omaovi.toml")], env) as device:
        ready = notify_socket.wait_for("READY=1", timeout=20)
        assert "STATUS=branch kallio, doors entrance" in ready[-1]
        notify_socket.wait_for("WATCHDOG=1")
        notify_socket.wait_for("WATCHDOG=1")
        device.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1")
        assert device.wait(10) == 0


def test_omaovi_web_reports_ready_once_it_serves_and_stops_cleanly(tmp_path, notify_socket):
    """The staff page as systemd starts it: Type=notify; READY=1 means the page answers."""
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "omaovi.toml").write_text(DEVICE_CONFIG + f'\n[web]\nhost = "127.0.0.1"\nport = {port}\n')
    (tmp_path / "consortium.key").write_bytes(KEY)
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_socket.path))
    with started_as_systemd(["web", "-c", str(tmp_path / "omaovi.toml")], env) as web:
        notify_socket.wait_for("READY=1", timeout=20)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as response:
            # No staff user yet: the login page leads to the page that says how to make one.
            assert response.status == 200 and "omaovi user add" in response.read().decode()
        web.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1")
        assert web.wait(10) == 0


def test_omaovi_central_serve_reports_ready_once_it_serves_and_stops_cleanly(tmp_path, notify_socket):
    """The central service as its unit starts it: Type=notify; READY=1 means the branches get answers."""
    import urllib.error
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "consortium.key").write_bytes(KEY)
    (tmp_path / "central.toml").write_text(f'consortium_key_file = "consortium.key"\n[server]\nport = {port}\n')
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_socket.path))
    with started_as_systemd(["central", "serve", "-c", str(tmp_path / "central.toml")], env) as central:
        assert "STATUS=central service on port" in notify_socket.wait_for("READY=1", timeout=30)[-1]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/branches/kallio/patrons", timeout=5)
        assert refused.value.code == 401, "it answers, and only a branch's own token gets in"
        central.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1")
        assert central.wait(15) == 0


# -- the journal --------------------------------------------------------------

def parse_journal_entry(data: bytes) -> dict[str, str]:
    """journald's native protocol, read the way journald reads it."""
    fields = {}
    while data:
        line, _, rest = data.partition(b"\n")
        if b"=" in line:
            name, _, value = line.partition(b"=")
            data = rest
        else:
            name = line
            (size,) = struct.unpack("<Q", rest[:8])
            value, data = rest[8:8 + size], rest[8 + size + 1:]
        fields[name.decode()] = value.decode()
    return fields


@pytest.fixture
def journal(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "journal"))
    sock.settimeout(2)
    handler = JournalHandler("omaovi", address=str(tmp_path / "journal"))
    yield sock, handler
    handler.close()
    sock.close()


def test_journal_entries_carry_door_event_type_and_reason(journal):
    sock, handler = journal
    logger = logging.getLogger("omaovi.test.journal")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("tap refused", extra={"door": "entrance", "event_type": "tap", "reason": "blocked"})
        entry = parse_journal_entry(sock.recv(65536))
        assert entry["MESSAGE"] == "tap refused"
        assert (entry["DOOR"], entry["EVENT_TYPE"], entry["REASON"]) == ("entrance", "tap", "blocked")
        assert entry["PRIORITY"] == "4" and entry["SYSLOG_IDENTIFIER"] == "omaovi"
        assert entry["LOGGER"] == "omaovi.test.journal"

        try:
            raise RuntimeError("relay board gone")
        except RuntimeError:
            logger.exception("error in the device loop")
        entry = parse_journal_entry(sock.recv(65536))
        assert entry["PRIORITY"] == "3"
        assert entry["MESSAGE"].startswith("error in the device loop\nTraceback")
        assert "RuntimeError: relay board gone" in entry["MESSAGE"]
        assert "DOOR" not in entry
    finally:
        logger.removeHandler(handler)


def test_a_tap_is_logged_to_the_journal_with_its_fields(tmp_path, journal):
    sock, handler = journal
    controller, store = _controller(tmp_path)
    logger = logging.getLogger("omaovi.device")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not .level =: only setLevel clears logging's per-logger cache
    try:
        controller.tap("entrance", "10000001")
        entries = []
        while not any(e.get("EVENT_TYPE") == "tap" for e in entries):
            entries.append(parse_journal_entry(sock.recv(65536)))
        tap = next(e for e in entries if e.get("EVENT_TYPE") == "tap")
        assert (tap["DOOR"], tap["REASON"]) == ("entrance", "closed")  # no hours set: closed
        assert "10000001" not in tap["MESSAGE"]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        controller.close()
        store.close()


def test_without_the_journal_socket_a_message_still_reaches_stderr(tmp_path, capsys):
    handler = JournalHandler("omaovi", address=str(tmp_path / "no-journal"))
    try:
        handler.emit(logging.makeLogRecord({"msg": "door forced", "levelno": logging.ERROR, "levelname": "ERROR", "name": "omaovi.device"}))
    finally:
        handler.close()
    assert "ERROR omaovi.device: door forced" in capsys.readouterr().err


def test_journal_stream_is_recognised_only_on_the_descriptor_it_names(tmp_path):
    with open(tmp_path / "stream", "w") as stream, open(tmp_path / "other", "w") as other:
        st = os.fstat(stream.fileno())
        environ = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stderr_is_journal(environ, fd=stream.fileno())
        assert not stderr_is_journal(environ, fd=other.fileno())
        assert not stderr_is_journal({}, fd=stream.fileno())
