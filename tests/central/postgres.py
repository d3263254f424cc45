"""A private PostgreSQL server for the tests, in a temporary folder on 127.0.0.1.

It is Debian's ``postgresql`` package (``./dev test`` installs it), started with
``initdb`` and ``pg_ctl`` the way a developer would, and stopped when the session ends,
pass or fail. PostgreSQL refuses to run as root, so under root (CI) the server runs as
the ``postgres`` user that the package creates.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

def _newest_bin() -> Path:
    """Debian keeps each major version apart: /usr/lib/postgresql/15/bin, 17/bin, …"""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


BIN = Path(os.environ["OMAOVI_PG_BIN"]) if "OMAOVI_PG_BIN" in os.environ else _newest_bin()
USER = "omaovi"


class PostgresServer:
    def __init__(self, *, durable: bool = False):
        """``durable``: keep PostgreSQL's own fsync and full-page writes, as a consortium's
        server runs it (the benchmarks); the tests leave them off, which is faster."""
        self.durable = durable
        self.folder = Path(tempfile.mkdtemp(prefix="omaovi-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self._names = itertools.count(1)
        self._as_user = _unprivileged()

    def start(self) -> "PostgresServer":
        if not (BIN / "initdb").exists():
            raise RuntimeError(f"{BIN}/initdb not found: install Debian's postgresql package (./dev test does)")
        if self._as_user:
            shutil.chown(self.folder, user="postgres")
        self._run(BIN / "initdb", "-D", self.data, "-U", USER, "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c max_connections=300"
        if not self.durable:
            options += " -F -c fsync=off -c full_page_writes=off"
        self._run(BIN / "pg_ctl", "-D", self.data, "-o", options, "-l", self.folder / "server.log", "-w", "start")
        return self

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def pid(self) -> int:
        """The postmaster's process id: its children are the server's backends."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def sql(self, statement: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname=database, autocommit=True) as connection:
            connection.execute(statement)

    def _run(self, *argv) -> None:
        command = [str(part) for part in argv]
        if self._as_user:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)


def _unprivileged() -> bool:
    """Whether the server must be started as ``postgres`` (we are root)."""
    if os.geteuid() != 0:
        return False
    pwd.getpwnam("postgres")  # KeyError: the postgresql package is not installed
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
