"""The pieces of a branch that the power-cut test starts, kills and talks to.

Each ``Service`` is one real ``omaovi`` process as systemd would run it: its own
interpreter, its own database connection, its log on stderr. The log is a file
rather than a pipe, so a process killed with unread output never blocks and
every line it wrote before dying can still be read afterwards.
``StaffClient`` is a staff member at the tablet: logged in once (the session
lives in the database, so it outlives a restart of the web process) and posting
edits, each of which either got its answer or did not.
``ReaderPty`` is the card reader: a pseudo-terminal that only the device reads.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent.parent

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
#: How long a reader that has lost its port waits before it opens the same path
#: again, at most: the longest of ReaderLoop's reconnect delays (3 s), with room
#: for a busy machine.
REOPEN_SECONDS = 4.0
#: Ptys taken before giving up on finding one that no other process opens.
PTY_ATTEMPTS = 5


class ServiceFailed(AssertionError):
    """A process did not come up, or exited when it should not have."""


class Service:
    def __init__(self, name: str, args: list[str], log_path: Path, ready_marker: str):
        self.name = name
        self.argv = [sys.executable, "-m", "device.cli", *args]
        self.log_path = log_path
        self.ready_marker = ready_marker
        self.env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC")}
        self.env |= {"GPIOZERO_PIN_FACTORY": "mock", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        self.proc: subprocess.Popen | None = None
        self.lives = 0

    def start(self, timeout: float = 30.0) -> float:
        """Start a new life and wait for its ready line; returns the monotonic time it was seen."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        self.lives += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_marker in self._log_from(offset):
                return time.monotonic()
            if self.proc.poll() is not None:
                raise ServiceFailed(f"{self.name} life {self.lives} exited with {self.proc.returncode} before it was ready:\n"
                                    f"{self._log_from(offset)[-3000:]}")
            time.sleep(0.01)
        self.kill()
        raise ServiceFailed(f"{self.name} life {self.lives} was not ready within {timeout:.0f} s:\n{self._log_from(offset)[-3000:]}")

    def kill(self) -> None:
        """The power cut: SIGKILL, no cleanup of any kind. Nothing if no life is running."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)  # nothing if it has ended already
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> int:
        """A clean stop as systemd does it; the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServiceFailed(f"{self.name} did not stop within {timeout:.0f} s of SIGTERM") from None

    def log(self) -> str:
        return self._log_from(0)

    def _log_from(self, offset: int) -> str:
        with open(self.log_path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", "replace")


class ReaderPty:
    """The device's serial card reader: a pty whose slave only the device under test opens.

    The kernel hands a freed /dev/pts/N out again at once, and an ``omaovi device``
    that a test run on the same machine left behind (SIGTERM to pytest leaves its
    children running, and a failed test may not stop its processes) tries its old
    /dev/pts/N every few seconds once that run has ended. When
    that is this pty, both processes read it and each gets pieces of the lines
    written: the device under test then decides a piece such as "3" (from
    "30000123") as a card of its own, and two alike look like one card decided
    twice. So a pty that another process opens within ``REOPEN_SECONDS`` is kept
    open, to keep that process busy with it, and another one is taken; ``sharers``
    names any process that still opens it later.
    """

    def __init__(self):
        taken: list[tuple[int, int]] = []
        for _ in range(PTY_ATTEMPTS):
            master, slave = os.openpty()
            time.sleep(REOPEN_SECONDS)
            self.master, self.slave, self.path = master, slave, os.ttyname(slave)
            if not self.sharers():
                break
            taken.append((master, slave))
        else:
            raise AssertionError(f"each of {PTY_ATTEMPTS} ptys was also opened by another process, such as {self.sharers()}")
        # The decoys stay open until the test process ends, so their readers never move on to this pty.
        self._decoys = taken

    def write_line(self, text: str) -> None:
        os.write(self.master, text.encode() + b"\n")

    def sharers(self) -> list[str]:
        """Every other process that has this pty's slave open, as "pid: command line".

        The test process and its children are left out: call it while no device
        of the test runs (a child just forked still holds the test's descriptors
        until it has started its program). Any process listed then reads what the
        test writes for the device.
        """
        device = os.stat(self.path).st_rdev
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.getpid() in (int(pid), _parent_of(pid)):
                    continue
                fds = [os.path.join(f"/proc/{pid}/fd", fd) for fd in os.listdir(f"/proc/{pid}/fd")]
                if any(_device_of(fd) == device for fd in fds):
                    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    found.append(f"{pid}: {command.strip()}")
            except OSError:  # gone meanwhile, or not ours to look at
                continue
        return found


def _parent_of(pid: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^PPid:\s*(\d+)", status, re.MULTILINE).group(1))


def _device_of(path: str) -> int | None:
    try:
        return os.stat(path).st_rdev
    except OSError:
        return None


class StaffClient:
    """Staff edits over HTTP. Each method returns the status, or None when no answer came."""

    def __init__(self, url: str, username: str, password: str):
        self.url = url
        self.username = username
        self.password = password
        self.http = requests.Session()
        self.http.trust_env = False  # nothing between us and 127.0.0.1
        self.token: str | None = None
        #: Every status other than a redirect after success, for the test to show.
        self.bad_answers: list[tuple[str, int]] = []

    def log_in(self) -> bool:
        page = self._send("GET", "/login")
        if page is None:
            return False
        token = _CSRF.search(page.text)
        if token is None:  # already logged in: the login page sent us on
            return self._refresh_token()
        answer = self._send("POST", "/login", data={"csrf_token": token.group(1), "username": self.username, "password": self.password})
        return answer is not None and answer.status_code == 302 and self._refresh_token()

    def close_day(self, day_text: str, note: str) -> int | None:
        """Add a dated exception, closed all day."""
        return self._edit("/hours/exceptions/new", {"date": day_text, "note": note, "kind": "closed"}, "/hours")

    def pulse(self, door: str) -> int | None:
        return self._edit(f"/doors/{door}/pulse", {}, "/doors")

    def _refresh_token(self) -> bool:
        page = self._send("GET", "/hours/exceptions/new")
        match = _CSRF.search(page.text) if page is not None and page.status_code == 200 else None
        self.token = match.group(1) if match else None
        return self.token is not None

    def _edit(self, path: str, data: dict, success: str) -> int | None:
        answer = self._send("POST", path, data={**data, "csrf_token": self.token})
        if answer is None:
            return None
        if answer.status_code != 302 or not answer.headers.get("Location", "").endswith(success):
            self.bad_answers.append((path, answer.status_code))
        return answer.status_code

    def _send(self, method: str, path: str, **kwargs) -> requests.Response | None:
        try:
            return self.http.request(method, self.url + path, allow_redirects=False, timeout=10, **kwargs)
        except requests.RequestException:
            return None
