"""``omaovi web``: the staff page served by waitress, a production WSGI server.

Waitress is pure Python (nothing to compile on the Pi), serves from a small fixed
pool of threads and is the server Flask's own deployment guide suggests first.
The unit is ``Type=notify``: READY=1 goes out once the socket listens.
"""

from __future__ import annotations

import logging
import signal
import threading

from waitress import create_server

from admin_web import create_app
from device.config import Config
from device.systemd_notify import Notifier

log = logging.getLogger("omaovi.web")

#: Worker threads: enough for a few staff browsers, the lobby board and the central office's pulls.
THREADS = 6


def make_server(config: Config, *, host: str | None = None, port: int | None = None):
    """A waitress server for this branch's app, bound but not yet serving."""
    app = create_app(config)
    return create_server(
        app, host=host or config.web.host, port=port if port is not None else config.web.port, threads=THREADS,
        ident="omaovi", clear_untrusted_proxy_headers=True,
    )


def serve(config: Config) -> int:
    server = make_server(config)
    notifier = Notifier()
    stop = threading.Event()

    def shut_down(*_):
        stop.set()
        server.close()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, shut_down)
    log.info("staff page on http://%s:%s/ for branch %s", config.web.host, server.effective_port, config.branch)
    notifier.ready(status=f"staff page on port {server.effective_port}")
    try:
        server.run()
    except OSError:
        if not stop.is_set():  # closing the socket on SIGTERM ends run() with EBADF
            raise
    finally:
        notifier.stopping()
        notifier.close()
    return 0
