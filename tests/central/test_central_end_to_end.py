"""The whole chain in separate processes: ``omaovi central serve``, ``omaovi sync`` and ``omaovi device``.

A booking made centrally opens the booth at the branch, a cancelled one stops
opening it after the next round, and every tap reaches the central service exactly
once across kill -9 of each of the three processes.
"""

from __future__ import annotations

import random
import socket
import sqlite3
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from central import bookings, branches, db, patrons, schema, tokens
from device.cards import card_key
from device.policy import Patron
from device.schedule import Period
from device.store import Store
from tests.reliability.power_cut_rig import ReaderPty, Service

KEY = "end-to-end-consortium-key-000000"
HOLDER, OTHER = "30000001", "30000002"
CARDS = [f"{30000100 + n}" for n in range(40)]

BRANCH_CONFIG = """\
branch = "kallio"
database = "omaovi.db"
consortium_key_file = "consortium.key"

[[doors]]
id = "entrance"
kind = "entrance"
lock_pin = 17
unlock_seconds = 1
[doors.reader]
type = "serial"
device = "{entrance}"
dedupe_seconds = 0

[[doors]]
id = "booth"
kind = "booth"
resource = "smartblock-1"
lock_pin = 5
unlock_seconds = 1
[doors.reader]
type = "serial"
device = "{booth}"
dedupe_seconds = 0

[central]
base_url = "http://127.0.0.1:{port}"
token_file = "central.token"
timeout = 3
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def key(number: str) -> str:
    return card_key(KEY.encode(), number)


class Consortium:
    """One central service and one branch, each process started and killed like systemd would."""

    def __init__(self, directory: Path, database_url: str):
        self.dir = directory
        self.port = _free_port()
        (directory / "consortium.key").write_text(KEY)
        central_toml = directory / "central.toml"
        central_toml.write_text(f'database = "{database_url}"\nconsortium_key_file = "consortium.key"\n'
                                f'[server]\nport = {self.port}\n')
        self.engine = db.open_engine(database_url)
        db.migrate(self.engine)
        now = datetime.now(timezone.utc)
        with db.writing(self.engine) as connection:
            branches.put_branch(connection, "kallio", "Kallion kirjasto")
            branches.put_booth(connection, "kallio", "smartblock-1", "Työhuone")
            token = tokens.add(connection, "kallio", "pi", now)
            patrons.put(connection, [Patron(key(n), self_service=True, valid_until=now.date() + timedelta(days=365),
                                            age_ok_from=now.date() - timedelta(days=9000)) for n in [HOLDER, OTHER, *CARDS]], now)
        (directory / "central.token").write_text(token + "\n")
        self.entrance, self.booth = ReaderPty(), ReaderPty()
        config = directory / "omaovi.toml"
        config.write_text(BRANCH_CONFIG.format(entrance=self.entrance.path, booth=self.booth.path, port=self.port))
        store = Store(directory / "omaovi.db")
        store.set_weekly({day: (Period(0, 1440, "self_service"),) for day in range(7)})
        store.close()
        self.central = Service("central", ["central", "serve", "-c", str(central_toml)], directory / "central.log", "central service on http://")
        self.device = Service("device", ["device", "-c", str(config)], directory / "device.log", "device loop running")
        self.sync_argv = ["sync", "--once", "-c", str(config)]

    def start_device(self) -> None:
        """Start the device and wait until both readers are open, so no tap is written to a pty nobody reads yet."""
        offset = len(self.device.log()) if self.device.log_path.exists() else 0
        self.device.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            opened = self.device.log()[offset:]
            if all(f"reader serial {pty.path} " in opened for pty in (self.entrance, self.booth)):
                return
            time.sleep(0.02)
        raise AssertionError(f"the readers did not open:\n{self.device.log()[-2000:]}")

    def sync(self) -> subprocess.CompletedProcess:
        """One ``omaovi sync --once`` round, to the end."""
        sync = Service("sync", self.sync_argv, self.dir / "sync.log", "")
        return subprocess.run(sync.argv, cwd=Path(__file__).resolve().parents[2], env=sync.env, capture_output=True,
                              text=True, timeout=120)

    def sync_killed_after(self, seconds: float) -> None:
        """A round cut by kill -9 after ``seconds``."""
        sync = Service("sync", self.sync_argv, self.dir / "sync.log", "")
        with open(sync.log_path, "ab") as log:
            sync.proc = subprocess.Popen(sync.argv, cwd=Path(__file__).resolve().parents[2], env=sync.env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(seconds)
        finally:
            sync.kill()

    def decisions(self, door: str) -> list[str]:
        """The device's decisions at a door, oldest first, from its log."""
        return [line.split("reason=")[1].split()[0] for line in self.device.log().splitlines() if f"tap door={door} " in line]

    def wait_for_decisions(self, door: str, count: int, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.decisions(door)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{door}: {count} decisions expected, the device logged {self.decisions(door)}")

    def branch_events(self) -> list[str]:
        with sqlite3.connect(self.dir / "omaovi.db", timeout=10) as connection:
            return [row[0] for row in connection.execute("SELECT uuid FROM events ORDER BY seq")]

    def central_events(self) -> list[str]:
        with db.reading(self.engine) as connection:
            return list(connection.execute(select(schema.events.c.uuid).where(schema.events.c.branch_id == "kallio")).scalars())

    def close(self) -> None:
        for service in (self.device, self.central):
            service.kill()
        self.engine.dispose()


@pytest.fixture
def consortium(tmp_path, database_url):
    world = Consortium(tmp_path, database_url)
    try:
        yield world
    finally:
        world.close()


def test_a_central_booking_opens_the_booth_and_a_cancelled_one_stops_opening_it(consortium):
    now = datetime.now(timezone.utc)
    with db.writing(consortium.engine) as connection:
        reference = bookings.book(connection, "kallio", "smartblock-1", key(HOLDER), now - timedelta(minutes=5),
                                  now + timedelta(hours=2), now)
    consortium.central.start()
    assert consortium.sync().returncode == 0, consortium.dir.joinpath("sync.log").read_text()[-2000:]
    consortium.start_device()

    consortium.booth.write_line(HOLDER)
    consortium.wait_for_decisions("booth", 1)
    consortium.booth.write_line(OTHER)  # one at a time: a newer read waiting at a door replaces an older one
    assert consortium.wait_for_decisions("booth", 2) == ["granted", "no_reservation"]

    with db.writing(consortium.engine) as connection:
        bookings.cancel(connection, reference, datetime.now(timezone.utc))
    consortium.booth.write_line(HOLDER)
    assert consortium.wait_for_decisions("booth", 3)[2] == "granted", "until the next round the branch decides from its copy"
    assert consortium.sync().returncode == 0
    consortium.booth.write_line(HOLDER)
    assert consortium.wait_for_decisions("booth", 4)[3] == "no_reservation"


def test_every_tap_reaches_the_central_service_exactly_once_across_kill_9_of_each_process(consortium):
    rng = random.Random(20261206)
    consortium.central.start()
    consortium.start_device()
    cards = list(CARDS)
    for round_number in range(6):
        for _ in range(rng.randint(3, 6)):
            if cards:
                consortium.entrance.write_line(cards.pop())
                time.sleep(rng.uniform(0.05, 0.15))  # a queue of people, not a read flood
        victim = ("device", "sync", "central")[round_number % 3]
        if victim == "device":
            time.sleep(rng.uniform(0, 0.3))
            consortium.device.kill()
            consortium.start_device()
        elif victim == "sync":
            consortium.sync_killed_after(rng.uniform(0.3, 1.2))
        else:
            consortium.sync_killed_after(rng.uniform(0.5, 1.0))
            consortium.central.kill()
            assert consortium.sync().returncode != 0, "with the central service down the round fails, and nothing is lost"
            consortium.central.start()
    assert consortium.device.lives >= 3 and consortium.central.lives >= 3
    for _ in range(5):
        if consortium.sync().returncode == 0:
            break
    recorded = consortium.branch_events()
    assert len([e for e in recorded]) >= 20, "the test must have tapped through the kills"
    arrived = consortium.central_events()
    assert sorted(arrived) == sorted(recorded), "every event of the branch arrived, and nothing else"
    assert len(arrived) == len(set(arrived))
