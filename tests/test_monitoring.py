"""A monitor watching a real door controller: /metrics, /api/v1/status and the Today page see it stop.

The device runs as its own process on mock pins with a line reader on a pty, as
``omaovi device`` runs on a Pi; the staff page and the API read the same database.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from admin_web import branch_now, tokens
from device import config as config_mod
from device.cards import card_key
from device.heartbeat import SILENT_AFTER
from device.readers.framing import IDLE_GAP
from device.store import Store
from simulated import child_env, with_pythonpath
from test_readers_serial import Pty
from webclient import BRANCH_CONFIG, PASSWORDS, WebClient, make_app, write_branch

REPO = Path(__file__).resolve().parent.parent
EN = {"Accept-Language": "en"}
#: The samples that come from what the device reports, given only while it runs.
DEVICE_REPORTED = {"omaovi_door_unlocked", "omaovi_door_open", "omaovi_door_alarm", "omaovi_door_lockdown",
                   "omaovi_reader_online", "omaovi_reader_dropped_reads_total"}


def samples(client, headers) -> dict:
    text = client.get("/metrics", headers=headers).get_data(as_text=True)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def wait_until(check, what: str, log: Path, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; the device's log:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def reader(tmp_path):
    device = Pty(tmp_path / "ttyREADER")
    device.plug()
    yield device
    device.unplug()


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_a_monitor_sees_the_door_controller_stop(tmp_path, reader, monkeypatch, stop):
    serial_reader = f'\n[doors.reader]\ntype = "serial"\ndevice = "{reader.link}"\nframing = "line"\n'
    config = write_branch(tmp_path)
    config.path.write_text(BRANCH_CONFIG.replace("exit_button_pin = 22\n", "exit_button_pin = 22\n" + serial_reader))
    config = config_mod.load(config.path)
    app = make_app(config)
    app.test_client_class = WebClient
    api, staff = app.test_client(), app.test_client()
    assert staff.login("staff", PASSWORDS["staff"]).status_code == 302
    store = Store(config.database)
    token = {"Authorization": f"Bearer {tokens.add(store, 'prometheus')}"}
    env = with_pythonpath(child_env(GPIOZERO_PIN_FACTORY="mock", PATH=os.environ.get("PATH", "/usr/bin:/bin")), str(REPO))
    log = tmp_path / "device.log"
    with log.open("wb") as out:
        device = subprocess.Popen([sys.executable, "-m", "device.cli", "device", "-c", str(config.path)], env=env, cwd=tmp_path,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        running = wait_until(lambda: (m := samples(api, token)).get(("omaovi_device_up", ())) == 1
                             and ("omaovi_door_unlocked", (("door", "entrance"),)) in m and m,
                             "the device to report", log)
        assert running[("omaovi_device_heartbeat_age_seconds", ())] < 30
        assert api.get("/api/v1/status", headers=token).get_json()["device"]["running"] is True
        assert "door controller" not in staff.get("/today/live", headers=EN).get_data(as_text=True)

        # A stray byte on the reader's line, then a patron's tap: the tap is read whole.
        wait_until(lambda: (store.status().get("reader:entrance") or {}).get("value", {}).get("online"), "the reader to open", log)
        reader.send(b"7")
        time.sleep(IDLE_GAP + 0.5)
        reader.send(b"10000001\r\n")
        taps = wait_until(lambda: [e for e in store.events() if e["type"] == "tap"], "the tap", log)
        assert taps[0]["card_key"] == card_key(b"k" * 32, "10000001")
        wait_until(lambda: samples(api, token).get(("omaovi_reader_dropped_reads_total", (("door", "entrance"),))) == 1,
                   "the dropped read on /metrics", log)

        device.send_signal(getattr(signal, stop))
        device.wait(timeout=30)
        if stop == "SIGKILL":
            # Nothing is written on a kill: the monitor sees the heartbeat go quiet.
            assert samples(api, token)[("omaovi_device_up", ())] == 1
            later = branch_now.utc_now() + SILENT_AFTER + timedelta(seconds=1)
            monkeypatch.setattr(branch_now, "utc_now", lambda: later)

        after = samples(api, token)
        assert after[("omaovi_device_up", ())] == 0
        assert not [name for name, _ in after if name in DEVICE_REPORTED], "no stale door states"
        status = api.get("/api/v1/status", headers=token).get_json()
        assert status["device"]["running"] is False
        assert {door["state"] for door in status["doors"]} == {"unknown"}
        since = datetime.fromisoformat(status["device"]["not_running_since"]).astimezone(config.tz)
        page = staff.get("/today/live", headers=EN).get_data(as_text=True)
        # The time alone today; with the date when it stopped before midnight.
        assert re.search(rf"The door controller has not been running since ([0-9.]+ )?{since:%H\.%M}:", page)
    finally:
        if device.poll() is None:
            device.kill()
        device.wait()
        store.close()
