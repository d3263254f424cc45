"""One run's sizes, its scratch folder and what its benchmarks share.

The consortium database is copied once per run and shared by the figures that
need it, and the test central service is started once: both take seconds at full
size, and the figures that use them run in the order a branch lives through them
(taps, then a snapshot, then changes). Likewise the real central service's database
on each engine (C1, C2) is built once per run, a PostgreSQL server started for it,
and both are removed when the run ends.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.data import KEY, LOCK_PINS, consortium_db, working_copy

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-device-token"


@dataclass(frozen=True)
class Scale:
    name: str
    patrons: int
    events: int
    count_years: int
    #: P1: taps timed; P2: taps after the first while the breaker is open.
    taps: int
    sip2_taps: int
    #: P4: delta rounds; P5: statistics queries; P8: outage recoveries.
    delta_rounds: int
    stats_runs: int
    push_events: int
    push_runs: int
    #: P6: seconds of load; P7: seconds of idling measured.
    web_seconds: float
    idle_seconds: float
    #: C1 and C2: the central service's patrons and branches; C1's timed sync rounds and their period.
    central_patrons: int
    central_branches: int
    central_rounds: int
    round_seconds: float


FULL = Scale("full", patrons=1_000_000, events=5_000_000, count_years=3, taps=1000, sip2_taps=200,
             delta_rounds=7, stats_runs=21, push_events=100_000, push_runs=3, web_seconds=10, idle_seconds=30,
             central_patrons=1_000_000, central_branches=700, central_rounds=2, round_seconds=30)
QUICK = Scale("quick", patrons=2_000, events=10_000, count_years=1, taps=20, sip2_taps=10,
              delta_rounds=2, stats_runs=3, push_events=2_000, push_runs=1, web_seconds=1, idle_seconds=1,
              central_patrons=20_000, central_branches=50, central_rounds=1, round_seconds=3)


class Workspace:
    def __init__(self, scale: Scale, data_dir: Path):
        self.scale = scale
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="run-", dir=self.data_dir))
        self._database: Path | None = None
        self._central = None
        self._postgres = None
        self._sites: dict = {}

    def database(self) -> Path:
        """This run's copy of the consortium database."""
        if self._database is None:
            cached = consortium_db(self.data_dir, self.scale.patrons, self.scale.events, self.scale.count_years)
            self._database = working_copy(cached, self.dir / "omaovi.db")
        return self._database

    def central(self):
        """The test central service in its own process, serving this run's patrons."""
        if self._central is None:
            from bench.central import CentralProcess

            self._central = CentralProcess(self.scale.patrons, TOKEN)
        return self._central

    def central_site(self, engine: str):
        """The real central service's database on ``engine`` (sqlite or postgresql), built once per run."""
        if engine not in self._sites:
            from bench import central_site

            folder = self.dir / f"central-{engine}"
            if engine == "sqlite":
                url, pid = f"sqlite:///{folder / 'central.db'}", None
            else:
                server = self.postgres()
                url, pid = server.new_database(), server.pid
            self._sites[engine] = central_site.build(
                folder, engine, url, self.scale.central_branches, self.scale.central_patrons, pid)
        return self._sites[engine]

    def postgres(self):
        """A private PostgreSQL server, as the central tests start one, but with its fsync on."""
        if self._postgres is None:
            from tests.central.postgres import PostgresServer

            server = PostgresServer(durable=True)
            try:
                server.start()
            except BaseException:
                server.stop()
                raise
            self._postgres = server
        return self._postgres

    def config_file(self, database: Path, central_url: str | None = None) -> Path:
        """A branch config on ``database``, with a ``[central]`` section when given its URL."""
        key_file = self.dir / "consortium.key"
        key_file.write_bytes(KEY)
        (self.dir / "central.token").write_text(TOKEN + "\n")
        central = ""
        if central_url is not None:
            central = f'[central]\nbase_url = "{central_url}"\ntoken_file = "central.token"\ntimeout = 30\n'
        doors = "".join(
            f'[[doors]]\nid = "{door}"\nkind = "entrance"\nlock_pin = {pin}\n\n' for door, pin in LOCK_PINS.items()
        )
        path = self.dir / f"{database.stem}.toml"
        path.write_text(
            f'branch = "bench"\ndatabase = "{database}"\nconsortium_key_file = "{key_file}"\n\n' + doors + central
        )
        return path

    def close(self) -> None:
        try:
            if self._central is not None:
                self._central.close()
        finally:
            try:
                if self._postgres is not None:
                    self._postgres.stop()
            finally:
                shutil.rmtree(self.dir, ignore_errors=True)
