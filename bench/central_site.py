"""The real central service (``omaovi central serve``) at consortium size, for C1 and C2.

A site is one engine's database, filled the way a consortium's would be: every
branch with a booth and a device token, and every patron's permissions. Patrons go
in with one bulk insert per chunk rather than through ``central.patrons.put`` (a
row at a time, with a log row each): a million would take many minutes, and the
figures measure serving them, not importing them. Branches, booths and tokens go
through the service's own modules, as the console makes them.

The service then runs as its own process, started as a consortium starts it, on a
``central.toml`` of its own.
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from http.client import HTTPConnection, HTTPException
from pathlib import Path

from bench.data import KEY, allowed, patron_keys
from bench.procs import Child, cpu_seconds, tree_cpu_seconds
from bench.workspace import REPO

ENGINES = ("sqlite", "postgresql")
ENGINE_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
#: The page size the brief and docs/central.md's consortium example use.
PAGE_SIZE = 5000
RESOURCE = "smartblock-1"
START_SECONDS = 120
_CHUNK = 10_000


@dataclass
class Site:
    engine: str
    #: The SQLAlchemy URL of its database.
    url: str
    folder: Path
    #: Branch id -> its device token, in branch order.
    tokens: dict[str, str]
    #: Every patron's card key, in build order.
    keys: list[str]
    #: The PostgreSQL server's postmaster, whose backends do part of the service's work; None on SQLite.
    database_pid: int | None

    @property
    def branches(self) -> list[str]:
        return list(self.tokens)


def build(folder: Path, engine_name: str, url: str, branches: int, patrons: int, database_pid: int | None) -> Site:
    from central import branches as central_branches
    from central import db, schema, tokens

    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    engine = db.open_engine(url)
    try:
        db.migrate(engine)
        now = datetime.now(timezone.utc)
        made: dict[str, str] = {}
        with db.writing(engine) as connection:
            for i in range(branches):
                branch = f"branch-{i:03d}"
                central_branches.put_branch(connection, branch, f"Kirjasto {i}")
                central_branches.put_booth(connection, branch, RESOURCE, "Työhuone")
                made[branch] = tokens.add(connection, branch, "pi", now)
        keys = patron_keys(patrons)
        for first in range(0, patrons, _CHUNK):
            with db.writing(engine) as connection:
                connection.execute(schema.patrons.insert(), [_patron_row(i, keys[i], now) for i in range(first, min(patrons, first + _CHUNK))])
        if engine.dialect.name == "postgresql":
            with engine.connect() as connection:
                connection.exec_driver_sql("ANALYZE")  # as autovacuum would have by the time the branches ask
    finally:
        engine.dispose()
    print(f"bench: built the {ENGINE_NAMES[engine_name]} central database ({patrons} patrons, {branches} branches)"
          f" in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    (folder / "consortium.key").write_bytes(KEY)
    return Site(engine_name, url, folder, made, keys, database_pid)


def _patron_row(i: int, key: str, now: datetime) -> dict:
    return {
        "card_key": key, "self_service": True, "blocked_reason": None if allowed(i) else "fines",
        "valid_until": date(2099, 12, 31), "age_ok_from": date(2000, 1, 1), "staff": False, "pin_verifier": None,
        "updated": now,
    }


def start(site: Site, log: Path) -> tuple[Child, str]:
    """``omaovi central serve`` on a free port of 127.0.0.1, once it answers; (process, base URL)."""
    port = free_port()
    config = site.folder / "central.toml"
    config.write_text(
        f'consortium_key_file = "consortium.key"\ndatabase = "{site.url}"\n\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n\n[protocol]\npage_size = {PAGE_SIZE}\n'
    )
    with log.open("wb") as output:
        child = Child([sys.executable, "-m", "device.cli", "central", "serve", "-c", str(config)],
                      cwd=REPO, stdout=output, stderr=output)
    try:
        wait_until_answering(port, child, log)
    except BaseException:
        child.stop()
        raise
    return child, f"http://127.0.0.1:{port}"


def wait_until_answering(port: int, child: Child, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the service ended at once (exit code {child.finished.returncode}); see {log}")
        try:
            connection = HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/")
            connection.getresponse().read()
            connection.close()
            return
        except (OSError, HTTPException):
            time.sleep(0.2)
    raise RuntimeError(f"the service did not answer on port {port} within {START_SECONDS} s; see {log}")


def cpu_used(service_pid: int, site: Site) -> dict[str, float]:
    """CPU seconds so far of the service's process and, on PostgreSQL, of the database server's."""
    used = {"service": cpu_seconds(service_pid)}
    if site.database_pid is not None:
        used["database"] = tree_cpu_seconds(site.database_pid)
    return used


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def synced_branches(site: Site) -> list:
    """Every branch as one that has synced all along: its cursors at the change logs' heads.

    Minted with the service's own key, so that the rounds measured are change rounds;
    a first round would be 700 full snapshots, which C2 measures on its own."""
    from bench.central_load import Branch
    from central import changelog, cursors, db

    engine = db.open_engine(site.url)
    try:
        with db.reading(engine) as connection:
            key = db.cursor_key(connection)
            heads = {stream: changelog.head(connection, stream) for stream in changelog.LOGS}
    finally:
        engine.dispose()
    return [
        Branch(branch, token, {
            stream: cursors.encode(cursors.Cursor(stream, branch, head.seq, head.mark), key) for stream, head in heads.items()
        })
        for branch, token in site.tokens.items()
    ]


def each_engine(figure_id: str, ws, measure) -> list:
    """``measure(ws, engine)`` on SQLite and on PostgreSQL; one engine failing still leaves the other's figure."""
    import traceback

    from bench.report import Figure

    figures = []
    for engine in ENGINES:
        started = time.monotonic()
        try:
            figure = measure(ws, engine)
        except Exception as exc:  # noqa: BLE001 - as bench.__main__ does for a whole figure
            traceback.print_exc()
            figure = Figure(f"{figure_id} {ENGINE_NAMES[engine]}", figure_id, "", error=f"{type(exc).__name__}: {exc}", passed=False)
        figure.values["seconds_taken"] = round(time.monotonic() - started, 1)
        figures.append(figure)
    return figures
