"""kill -9 during a stream of taps: no opened door without its record, no duplicates."""

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time

from device.cards import card_key

KEY = "durability-test-consortium-key-0"
CARDS = [f"{20000000 + i}" for i in range(400)]

CONFIG = """\
branch = "durability"
database = "omaovi.db"
consortium_key_file = "consortium.key"

[[doors]]
id = "entrance"
kind = "entrance"
lock_pin = 17
unlock_seconds = 1
[doors.reader]
type = "serial"
device = "{device}"
dedupe_seconds = 0
"""

TAP_LINE = re.compile(r"tap door=entrance granted=True reason=granted mode=self_service event=([0-9a-f-]{36})")


def _setup(tmp_path, device):
    (tmp_path / "omaovi.toml").write_text(CONFIG.format(device=device))
    (tmp_path / "consortium.key").write_text(KEY)
    (tmp_path / "patrons.csv").write_text(
        "card_number,self_service,valid_until,age_ok_from\n"
        + "".join(f"{c},1,2099-01-01,2000-01-01\n" for c in CARDS)
    )
    cli = [sys.executable, "-m", "device.cli"]
    env = os.environ | {"GPIOZERO_PIN_FACTORY": "mock"}
    subprocess.run(cli + ["patrons", "import", str(tmp_path / "patrons.csv"), "-c", str(tmp_path / "omaovi.toml")], check=True, env=env, capture_output=True)
    db = sqlite3.connect(tmp_path / "omaovi.db")
    db.execute("INSERT INTO weekly_periods (weekday, start, end, mode) SELECT value, 0, 1440, 'self_service' FROM json_each('[0,1,2,3,4,5,6]')")
    db.commit()
    db.close()
    return cli, env


def test_kill_9_at_random_points_loses_no_opened_door_and_duplicates_nothing(tmp_path):
    master, slave = os.openpty()
    cli, env = _setup(tmp_path, os.ttyname(slave))
    rng = random.Random(20261123)
    pulsed: list[str] = []
    remaining = list(CARDS)
    rounds = 0
    while remaining and rounds < 12:
        rounds += 1
        proc = subprocess.Popen(cli + ["device", "-c", str(tmp_path / "omaovi.toml")], env=env,
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        for line in proc.stderr:  # wait until the reader is open
            if "opened" in line:
                break
        kill_at = time.monotonic() + rng.uniform(0.2, 1.2)
        while remaining and time.monotonic() < kill_at:
            os.write(master, remaining.pop(0).encode() + b"\n")
            time.sleep(rng.uniform(0, 0.02))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        pulsed += TAP_LINE.findall(proc.stderr.read())
    assert rounds >= 3 and len(pulsed) >= 50, "the test must have killed the device in the middle of real work"

    db = sqlite3.connect(tmp_path / "omaovi.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    taps = db.execute("SELECT uuid, card_key FROM events WHERE type = 'tap'").fetchall()
    recorded = {uuid for uuid, _ in taps}
    missing = [u for u in pulsed if u not in recorded]
    assert not missing, f"{len(missing)} door openings have no event"
    keys = [k for _, k in taps]
    assert len(keys) == len(set(keys)), "a tap was recorded twice"
    assert set(keys) <= {card_key(KEY.encode(), c) for c in CARDS}
    visits = db.execute("SELECT sum(count) FROM hourly_counts WHERE metric = 'visit_self_service'").fetchone()[0]
    assert visits == len(taps), "every recorded visit is counted exactly once"
