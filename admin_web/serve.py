"""``omaovi web``: the staff page served by waitress, in one or more worker processes.

Waitress is pure Python (nothing to compile on the Pi), serves from a small fixed
pool of threads and is the server Flask's own deployment guide suggests first.
The unit is ``Type=notify``: READY=1 goes out once the sockets listen.

One process runs its Python one thread at a time (the interpreter lock), and a
staff page request is mostly Python: 1.5-2 ms of it per request here. With 20
clients at once, one process queued them to a p95 of about 100 ms (benchmark P6),
so ``[web] workers`` processes (2 by default) each serve the same app on their own
socket. The sockets share the port (SO_REUSEPORT) and the kernel spreads new
connections over them, so no process has to hand connections to another.

The first process serves too and keeps an eye on the others: a worker that dies
takes the whole service down with a non-zero status, and systemd (Restart=always)
starts it again whole, rather than this code growing into a process manager.
Workers die with the first process (PR_SET_PDEATHSIG), so a ``kill -9`` of it
leaves no worker holding the port, under systemd or not.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import threading
import time
from io import BytesIO

from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer

from admin_web import bodies, create_app
from device.config import Config, warnings
from device.systemd_notify import serve_notified

log = logging.getLogger("omaovi.web")

#: Worker threads per process: with the default two processes, enough for a few
#: staff browsers, the lobby board and the central office's pulls. More only wait
#: for the interpreter lock in no fair order, where a queued request waits its
#: turn: 6 instead of 4 made P6's p95 47-50 ms instead of 40.
THREADS = 4
#: The largest request body waitress keeps, all of it in memory: by default it
#: writes a body over 512 KB to a temporary file before the page sees it, and an
#: upload may be a patron CSV full of raw card numbers. What one request may keep
#: is smaller and decided per user (admin_web/bodies.py); a body over that is
#: read and thrown away, up to twice the biggest upload, so that the page can
#: still answer in the user's language. A bigger body gets waitress's own refusal.
MAX_BODY = 2 * bodies.ADMIN_BODY
_PR_SET_PDEATHSIG = 1


def make_server(config: Config, *, host: str | None = None, port: int | None = None, app=None, sockets=None):
    """A waitress server for this branch's app, bound but not yet serving."""
    app = app or create_app(config)
    where = {"sockets": sockets} if sockets else {
        "host": host or config.web.host, "port": port if port is not None else config.web.port,
    }
    channels = {}
    server = create_server(
        app, map=channels, threads=THREADS, ident="omaovi", clear_untrusted_proxy_headers=True,
        max_request_body_size=MAX_BODY, inbuf_overflow=MAX_BODY, **where,
    )
    channel_class = _channel_class(app)
    for listener in channels.values():
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = channel_class
    return server


class _RefusedBody:
    """Stands in for waitress's body buffer: keeps up to ``limit`` bytes, and once
    the body goes over, drops what it kept and only counts the rest."""

    def __init__(self, buffer, limit: int, refused: bool = False):
        self.buffer, self.limit, self.size = buffer, limit, 0
        self.refused = refused
        if refused:
            self._drop()

    def append(self, data: bytes) -> None:
        self.size += len(data)
        if self.refused:
            return
        if self.size > self.limit:
            self.refused = True
            self._drop()
            return
        self.buffer.append(data)

    def _drop(self) -> None:
        self.buffer.close()
        self.buffer = None

    def __len__(self) -> int:
        return 0 if self.refused else len(self.buffer)

    def getfile(self):
        return BytesIO() if self.refused else self.buffer.getfile()

    def close(self) -> None:
        if self.buffer is not None:
            self.buffer.close()


class _LimitedBodyParser(HTTPRequestParser):
    """Waitress's request parser, with each body held to its sender's limit (admin_web/bodies.py)."""

    app = None

    def parse_header(self, header_plus):
        super().parse_header(header_plus)
        self.headers.pop(bodies.REFUSED_HEADER, None)  # only this server sets it
        receiver = self.body_rcv
        if receiver is None or (not self.chunked and self.content_length <= bodies.ANONYMOUS_BODY):
            return
        limit = bodies.limit_for_headers(self.app, self.headers.get("COOKIE"))
        receiver.buf = _RefusedBody(receiver.buf, limit, refused=not self.chunked and self.content_length > limit)

    def received(self, data):
        consumed = super().received(data)
        receiver = self.body_rcv
        if self.completed and receiver is not None and isinstance(receiver.buf, _RefusedBody) and receiver.buf.refused:
            self.headers[bodies.REFUSED_HEADER] = str(receiver.buf.limit)
            self.headers["CONTENT_LENGTH"] = "0"
        return consumed


def _channel_class(app) -> type[HTTPChannel]:
    parser = type("Parser", (_LimitedBodyParser,), {"app": app})
    return type("Channel", (HTTPChannel,), {"parser_class": parser})


def serve(config: Config) -> int:
    # The database is migrated and the secret key made here, once, before any fork;
    # no SQLite connection is open yet, so none crosses a fork.
    app = create_app(config)
    _compile_templates(app)
    first = _listening_socket(config.web.host, config.web.port)
    port = first.getsockname()[1]
    workers = [_start_worker(app, config, port, first) for _ in range(config.web.workers - 1)]
    server = make_server(config, app=app, sockets=[first])
    stopping = threading.Event()
    failed = threading.Event()

    def shut_down(*_):
        stopping.set()
        server.close()

    def worker_ended(*_):
        for pid in list(workers):
            ended, status = os.waitpid(pid, os.WNOHANG)
            if not ended:
                continue
            workers.remove(pid)
            if not stopping.is_set():
                log.error("web worker %d ended (%s); stopping so that the service is started again whole",
                          pid, _exit_text(status))
                failed.set()
                shut_down()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, shut_down)
    signal.signal(signal.SIGCHLD, worker_ended)
    worker_ended()  # one that failed before the handler was there
    log.info("staff page on http://%s:%s/ for branch %s, %d worker process(es)",
             config.web.host, port, config.branch, config.web.workers)
    for warning in warnings(config):
        log.warning("%s", warning)
    try:
        serve_notified(server, f"staff page on port {port}", stopping)
    finally:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _stop_workers(workers)
    return 1 if failed.is_set() else 0


def _compile_templates(app) -> None:
    """Every template compiled before the fork: the workers share them instead of each
    compiling its own on its first requests (0.1-0.3 s, seen as the slowest answers
    of benchmark P6)."""
    for name in app.jinja_env.list_templates(extensions=["html"]):
        app.jinja_env.get_template(name)


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def _start_worker(app, config: Config, port: int, first: socket.socket) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the first process died before the line above
            os._exit(1)
        first.close()
        sock = _listening_socket(config.web.host, port)
        server = make_server(config, app=app, sockets=[sock])
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: server.close())
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            server.run()
        except OSError:
            pass  # closed on SIGTERM
        os._exit(0)
    except BaseException:  # noqa: BLE001 - a forked child must never return into the parent's code
        log.exception("web worker %d failed", os.getpid())
        os._exit(1)


def _stop_workers(workers: list[int], wait_seconds: float = 10) -> None:
    for pid in workers:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait_seconds
    for pid in workers:
        while True:
            try:
                ended, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break  # already reaped
            if ended:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.05)


def _exit_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


class _QueueWarnings(logging.Filter):
    """Waitress warns "Task queue depth is N" for every request that waits for a free
    thread. Under a burst that is a log line per request, and writing them took 5 %
    of the server's time (benchmark P6); one a minute says the same.
    """

    EVERY_SECONDS = 60

    def __init__(self):
        super().__init__()
        self._last = float("-inf")
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._last < self.EVERY_SECONDS:
            self._held += 1
            return False
        if self._held:
            record.msg = f"{record.getMessage()} ({self._held} more since the last one logged)"
            record.args = ()
        self._last, self._held = now, 0
        return True


logging.getLogger("waitress.queue").addFilter(_QueueWarnings())
