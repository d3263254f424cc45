"""P7: what a door costs while nobody comes: CPU and memory of the idle processes.

``omaovi device`` runs as a branch runs it, with two doors and an RC522 polled on a
simulated SPI bus (bench/fake_pi), next to a bare Python interpreter that only
sleeps, measured the same way: the least any Python daemon costs on this machine.
``omaovi web`` runs its default two worker processes; its memory is their
proportional set size summed (see ``bench.procs.service_memory``), beside which
each process's RSS is reported.
"""

from __future__ import annotations

import os
import sys

from bench import web
from bench.procs import measure_idle
from bench.report import Figure
from bench.timing import ratio
from bench.workspace import REPO
from device.store import Store

CPU_PERCENT = 2.0
DEVICE_RSS_MB = 40
WEB_MEMORY_MB = 60
#: The reader belongs to the door written last in the config (see Workspace.config_file).
READER = '[doors.reader]\ntype = "mfrc522"\n'
BARE = "import time\nwhile True:\n    time.sleep(0.1)\n"


def run(ws) -> Figure:
    figure = Figure("P7", "idle cost",
                    f"device <= {CPU_PERCENT:g} % of a core, RSS <= {DEVICE_RSS_MB} MB; web <= {WEB_MEMORY_MB} MB")
    database = ws.database()
    config = ws.config_file(database)
    with config.open("a") as toml:
        toml.write(READER)
    (ws.dir / "spidev0.0").touch()
    env = os.environ | {"PYTHONPATH": f"{REPO / 'bench' / 'fake_pi'}{os.pathsep}{REPO}", "GPIOZERO_PIN_FACTORY": "mock"}
    seconds = ws.scale.idle_seconds
    device = measure_idle([sys.executable, "-m", "bench.idle_device", str(config), str(ws.dir / "spidev")], env, seconds,
                          ws.dir / "p7-device.log", REPO)
    bare = measure_idle([sys.executable, "-c", BARE], env, seconds, ws.dir / "p7-bare.log", REPO)
    store = Store(database)
    reader = store.status().get("reader:side", {}).get("value", {})
    store.close()
    web_rss = web.idle_rss(ws, database, seconds)
    figure.values = {"device": device, "bare_python": bare, "reader": reader, "seconds": seconds, "web": web_rss}
    figure.baseline = "RSS of a bare sleeping Python"
    figure.ratio = ratio(device["rss_mb"], bare["rss_mb"])
    figure.result = (
        f"device {device['cpu_percent']} % CPU, RSS {device['rss_mb']} MB; web {web_rss['pss_mb']} MB"
        f" in {web_rss['processes']} processes (PSS; RSS {' + '.join(map(str, web_rss['rss_each_mb']))} MB)"
    )
    device_ok = reader.get("online") is True and device["cpu_percent"] <= CPU_PERCENT and device["rss_mb"] <= DEVICE_RSS_MB
    figure.passed = device_ok and web_rss["pss_mb"] <= WEB_MEMORY_MB
    return figure
