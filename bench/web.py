"""The staff web app (``omaovi web``) for P6 and P7, started as a branch starts it.

The app is being written on another branch. This module is the one place that
knows how it is started and how its clients sign in, so wiring it in means
checking these assumptions against it, here and nowhere else:

- ``admin_web.create_app`` exists and ``omaovi web -c FILE`` serves it;
- the config's ``[web]`` section takes ``host`` and ``port``;
- ``omaovi users add NAME --password-file FILE -c FILE`` makes a staff user, who
  signs in with a form POST of ``username`` and ``password`` to ``/login``;
- ``omaovi tokens add NAME -c FILE`` prints an API token for ``Authorization: Bearer``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from bench.procs import Child, measure_idle
from bench.workspace import REPO

STAFF = "bench-staff"
PASSWORD = "bench-password-123"
START_SECONDS = 15


def missing() -> str | None:
    """Why the web app cannot be measured on this branch, or None when it can."""
    try:
        import admin_web
    except ImportError:
        return "admin_web not present"
    if not hasattr(admin_web, "create_app"):
        return "admin_web not present"
    from device.cli import COMMANDS

    if not any(command == "web" for command, _ in COMMANDS):
        return "omaovi web not present"
    return None


def config(ws, database: Path) -> tuple[Path, str]:
    """A branch config with a ``[web]`` section on a free port, and the base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = ws.config_file(database)
    with path.open("a") as toml:
        toml.write(f'\n[web]\nhost = "127.0.0.1"\nport = {port}\n')
    return path, f"http://127.0.0.1:{port}"


def command(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "device.cli", "web", "-c", str(config_path)]


def start(config_path: Path, url: str, log: Path) -> Child:
    with log.open("wb") as output:
        child = Child(command(config_path), cwd=REPO, stdout=output, stderr=output)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline and child.poll() is None:
        try:
            requests.get(url + "/", timeout=1, allow_redirects=False)
            return child
        except requests.ConnectionError:
            time.sleep(0.1)
    child.stop()
    raise RuntimeError(f"omaovi web did not answer at {url} within {START_SECONDS} s; see {log}")


def staff_cookie(url: str, config_path: Path, work_dir: Path) -> str:
    """The Cookie header of a signed-in staff member."""
    password_file = work_dir / "staff.password"
    password_file.write_text(PASSWORD + "\n")
    _cli("users", "add", STAFF, "--password-file", str(password_file), "-c", str(config_path))
    session = _session()
    answer = session.post(url + "/login", data={"username": STAFF, "password": PASSWORD}, timeout=10)
    answer.raise_for_status()
    return "; ".join(f"{name}={value}" for name, value in session.cookies.items())


def api_token(config_path: Path) -> str:
    return _cli("tokens", "add", "bench", "-c", str(config_path)).strip().split()[-1]


def idle_rss(ws, database: Path, seconds: float) -> dict:
    config_path, url = config(ws, database)
    return measure_idle(command(config_path), dict(os.environ), seconds, ws.dir / "p7-web.log", REPO)


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment between us and 127.0.0.1
    return session


def _cli(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "device.cli", *args], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout
