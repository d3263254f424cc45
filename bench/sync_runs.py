"""What the sync benchmarks (P3, P4, P8) share: the sync process and a sync runner in this one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from bench.procs import Child
from bench.workspace import REPO
from sync.central import SyncRunner


def sync_once_process(config: Path, log: Path) -> Child:
    """``omaovi sync --once``, exactly as a branch runs it, in a process of its own."""
    with log.open("wb") as output:
        return Child([sys.executable, "-m", "device.cli", "sync", "--once", "-c", str(config)],
                     cwd=REPO, stdout=output, stderr=subprocess.STDOUT)


def runner(config: Path) -> SyncRunner:
    """A runner in this process, talking straight to 127.0.0.1 and never waiting to retry."""
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment between us and 127.0.0.1
    return SyncRunner.from_config_file(config, session=session, sleep=lambda seconds: False)


def round_once(sync: SyncRunner) -> None:
    """One round that must go well for the figure to mean anything."""
    errors = {stream: error for stream, error in sync.run_once().items() if error}
    if errors:
        raise RuntimeError(f"sync round failed: {errors}")
