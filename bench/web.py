"""The staff web app (``omaovi web``) for P6, P7 and P9, started as a branch starts it.

The one place that knows how the app is started and how its clients sign in:
``omaovi user add NAME --password-stdin`` makes a staff user, who signs in with a
form POST (with the page's CSRF token) to ``/login``; ``omaovi token add NAME``
prints an API token for ``Authorization: Bearer``.
"""

from __future__ import annotations

import os
import re
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


def config(ws, database: Path, central_url: str | None = None) -> tuple[Path, str]:
    """A branch config with a ``[web]`` section on a free port (and a ``[central]`` one
    when given its URL), and the base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = ws.config_file(database, central_url)
    with path.open("a") as toml:
        # The load client talks plain HTTP to the page itself, not through the HTTPS proxy.
        toml.write(f'\n[web]\nhost = "127.0.0.1"\nport = {port}\nsecure_cookies = false\n')
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


def staff_cookie(url: str, config_path: Path, name: str = STAFF) -> str:
    """The Cookie header of staff member ``name``, made and signed in (a name once per database)."""
    _cli("user", "add", name, "--password-stdin", "-c", str(config_path), stdin=PASSWORD + "\n")
    session = _session()
    login_page = session.get(url + "/login", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', login_page).group(1)
    answer = session.post(url + "/login", data={"csrf_token": token, "username": name, "password": PASSWORD}, timeout=10)
    answer.raise_for_status()
    if "/login" in answer.url:
        raise RuntimeError("the benchmark's staff user could not log in")
    return "; ".join(f"{name}={value}" for name, value in session.cookies.items())


def api_token(config_path: Path, name: str = "bench") -> str:
    """A new API token named ``name`` (a name once per database)."""
    return _cli("token", "add", name, "-c", str(config_path)).strip()


def idle_rss(ws, database: Path, seconds: float) -> dict:
    config_path, url = config(ws, database)
    return measure_idle(command(config_path), dict(os.environ), seconds, ws.dir / "p7-web.log", REPO)


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment between us and 127.0.0.1
    return session


def _cli(*args: str, stdin: str | None = None) -> str:
    return subprocess.run([sys.executable, "-m", "device.cli", *args], cwd=REPO, check=True,
                          capture_output=True, text=True, input=stdin).stdout
