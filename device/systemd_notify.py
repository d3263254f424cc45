"""Tell systemd that the device is up and still alive (the sd_notify protocol).

The device unit is ``Type=notify`` with ``WatchdogSec=``: systemd counts the
service as started only after READY=1, and restarts it when WATCHDOG=1 stops
arriving. The pings are sent from the device's main loop, so a loop that hangs
(a stuck database call, a deadlock) stops them and systemd restarts the process;
a ping from a separate timer thread would keep a hung door controller "alive".

The protocol is one datagram of ``KEY=value`` lines to the AF_UNIX socket named in
``$NOTIFY_SOCKET``; a name starting with "@" is in the abstract namespace. It is
small enough that a dependency (python-systemd, sdnotify) would cost more than it
saves. Without ``$NOTIFY_SOCKET`` (a terminal, the tests, the demo) every call does
nothing, so the same code runs everywhere.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable, Mapping

log = logging.getLogger("omaovi.systemd")


class Notifier:
    """Sends notifications to the socket in ``environ["NOTIFY_SOCKET"]``, if there is one."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, state: str) -> bool:
        """Send one notification; False if there is no socket or it could not be sent.

        A failure is logged once and never raised: the door must keep working
        even if systemd's socket is gone (for example while systemd re-executes).
        """
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(state.encode("utf-8"), self.address)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify systemd at %r: %s", self.address, exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def serve_notified(server, status: str, stopping: threading.Event) -> None:
    """Run a waitress ``server`` as a ``Type=notify`` service: ready once it serves, stopping when it ends.

    A SIGTERM handler stops the service by setting ``stopping`` and closing the
    server's socket, which ends ``run()`` with EBADF; any other error is raised.
    """
    notifier = Notifier()
    notifier.ready(status=status)
    try:
        server.run()
    except OSError:
        if not stopping.is_set():
            raise
    finally:
        notifier.stopping()
        notifier.close()


def _address(name: str) -> str | bytes | None:
    if not name:
        return None
    if name.startswith("@"):
        # Abstract namespace: the name starts with a NUL byte instead of "@".
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    return None  # systemd also allows vsock addresses; a Pi service never gets one


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings: half of ``$WATCHDOG_USEC``, or None when no watchdog is set.

    Half, as sd_watchdog_enabled(3) advises, so one late tick does not cost a restart.
    ``$WATCHDOG_PID``, when set, names the process the watchdog is meant for; a
    child process that inherited the variables must not ping on its parent's behalf.
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1_000_000 / 2


class LoopNotifier:
    """The ``on_tick`` of the device loop: READY=1 on the first tick, then WATCHDOG=1 every interval.

    The first tick means the loop has started, the doors are set up and the
    schedule has been applied once, which is what "ready" means for a door.
    """

    def __init__(
        self,
        notifier: Notifier,
        interval: float | None,
        *,
        status: str | Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.notifier = notifier
        self.interval = interval
        self.status = status
        self.clock = clock
        self._ready = False
        self._sent_status: str | None = None
        self._last_ping = float("-inf")

    def __call__(self) -> None:
        status = self.status() if callable(self.status) else self.status
        if not self._ready:
            self._ready = True
            self._sent_status = status
            self.notifier.ready(status)
            log.info("device loop running%s", " (systemd notified)" if self.notifier.enabled else "")
        elif status != self._sent_status:
            # A status that changes (the storage-failed warning) reaches `systemctl status` at once.
            self._sent_status = status
            self.notifier.send(f"STATUS={status}")
        if self.interval is None:
            return
        now = self.clock()
        if now - self._last_ping >= self.interval:
            self._last_ping = now
            self.notifier.watchdog()
