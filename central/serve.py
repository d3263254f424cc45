"""``omaovi central serve``: the central service on waitress, one process, as a systemd notify service.

The schema is brought up to date before the first request, and the change logs are
compacted once an hour, and the patrons are taken from Koha (``[koha] interval``) or
from a folder of exports (``[patrons_folder]``) when configured, so a consortium's IT
has one service to run and nothing to schedule beside it.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime, timedelta, timezone

from waitress import create_server

from central import changelog, db
from central.app import create_app
from central.config import CentralSettings
from device.systemd_notify import serve_notified

log = logging.getLogger("omaovi.central")

COMPACT_EVERY = timedelta(hours=1)


def make_server(settings: CentralSettings, *, port: int | None = None):
    """Migrated, bound and ready to ``run()``; ``port=0`` picks a free one (tests)."""
    engine = db.open_engine(settings.database_url)
    db.migrate(engine)
    app = create_app(settings, engine)
    server = create_server(
        app, host=settings.server.host, port=settings.server.port if port is None else port,
        threads=settings.server.threads, ident="omaovi-central", clear_untrusted_proxy_headers=True,
    )
    return server, engine


class Background:
    """A waitress server run in a thread of this process, and closed cleanly: for the demo and the tests."""

    def __init__(self, server, name: str = "central"):
        self.server = server
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closing = True
        self.server.close()
        self._thread.join(timeout=10)
        self.server.task_dispatcher.shutdown()

    def _run(self) -> None:
        try:
            self.server.run()
        except OSError:
            if not self._closing:  # closing the socket ends run() with EBADF
                raise


def serve(settings: CentralSettings) -> int:
    server, engine = make_server(settings)
    stopping = threading.Event()

    def shut_down(*_):
        stopping.set()
        server.close()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, shut_down)
    start_background(engine, settings, stopping)
    host, port = server.effective_host, server.effective_port
    log.info("central service on http://%s:%s/ (%s)", host, port, engine.url.render_as_string(hide_password=True))
    try:
        serve_notified(server, f"central service on port {port}", stopping)
    finally:
        engine.dispose()
    return 0


def start_background(engine, settings: CentralSettings, stopping: threading.Event) -> list[threading.Thread]:
    """The service's own schedule: compaction, and the patrons from Koha or from a folder when configured."""
    from central import koha_sync, patrons_folder
    from central.koha import KohaError

    jobs = [threading.Thread(target=_compact_hourly, args=(engine, settings, stopping), name="compaction", daemon=True)]
    if settings.koha is not None and settings.koha.interval is not None:
        job = _Repeated("Koha sync", lambda now: koha_sync.sync(settings, engine, now).summary(), KohaError)
        jobs.append(threading.Thread(target=job.run, args=(settings.koha.interval, stopping), name="koha-sync", daemon=True))
    if settings.patrons_folder is not None:
        job = _Repeated("patron export", lambda now: patrons_folder.import_newest(settings, engine, now),
                        patrons_folder.FolderImportError)
        jobs.append(threading.Thread(target=job.run, args=(settings.patrons_folder.interval, stopping),
                                     name="patrons-folder", daemon=True))
    for thread in jobs:
        thread.start()
    return jobs


class _Repeated:
    """A job run at start and then every interval; one that fails changes nothing and the next round tries again."""

    def __init__(self, what: str, job, expected: type[Exception]):
        self.what, self.job, self.expected = what, job, expected

    def run(self, interval: timedelta, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                said = self.job(datetime.now(timezone.utc))
                if said:
                    log.info("central: %s: %s", self.what, said)
            except self.expected as exc:
                log.error("central: the %s changed nothing: %s", self.what, exc)
            except Exception:  # a bug or a database outage must not end the schedule
                log.exception("central: the %s failed", self.what)
            stopping.wait(interval.total_seconds())


def compact(engine, settings: CentralSettings, now: datetime) -> dict[str, int]:
    """Forget changes older than ``keep_changes_days``; branches further behind take a snapshot."""
    before = now - timedelta(days=settings.protocol.keep_changes_days)
    with db.writing(engine) as connection:
        return {stream: changelog.compact(connection, stream, before) for stream in changelog.LOGS}


def _compact_hourly(engine, settings: CentralSettings, stopping: threading.Event) -> None:
    while not stopping.wait(COMPACT_EVERY.total_seconds()):
        try:
            gone = compact(engine, settings, datetime.now(timezone.utc))
        except Exception:  # a failed compaction must not stop the service; the next hour tries again
            log.exception("central: compacting the change logs failed")
            continue
        if any(gone.values()):
            log.info("central: compacted the change logs: %s", ", ".join(f"{s} {n}" for s, n in gone.items()))
