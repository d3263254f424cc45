"""``omaovi web`` under its unit's memory limit while someone on the LAN attacks it (issue 14).

The real service (two worker processes, as a branch runs it) runs in a memory
cgroup limited like the unit's ``MemoryMax=256M``. Going over the limit is not
slower service: the kernel kills a process, and every staff member's page is gone
until systemd starts the unit again. What staff would notice is therefore
checked: no process was killed, and the page still answers and logs them in.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from admin_web import accounts
from bench.procs import Child
from device.store import Store
from memory_cgroup import ROOT as CGROUP_ROOT
from memory_cgroup import memory_cgroup
from webclient import PASSWORDS, write_branch

REPO = Path(__file__).resolve().parents[2]
LIMIT_MB = 256
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

pytestmark = pytest.mark.skipif(
    not os.access(CGROUP_ROOT / "cgroup.procs", os.W_OK), reason="needs the cgroup v1 memory controller, writable (root)",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def staff_page_in_cgroup(tmp_path, name: str):
    """``omaovi web`` with 2 workers inside a fresh 256 MB memory cgroup; killed, and the group removed, at the end."""
    port = _free_port()
    config = write_branch(tmp_path)
    config.path.write_text(config.path.read_text().replace("[web]\n", f'[web]\nhost = "127.0.0.1"\nport = {port}\nworkers = 2\nsecure_cookies = false  # plain HTTP on 127.0.0.1 here\n'))
    store = Store(config.database)
    for role, password in PASSWORDS.items():
        accounts.add_user(store, role, password, role)
    store.close()
    with memory_cgroup(name, LIMIT_MB) as group:
        process = subprocess.Popen(
            [sys.executable, "-m", "device.cli", "web", "-c", str(config.path)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=group.add_self,
        )
        try:
            deadline = time.monotonic() + 60
            while not (len(group.pids()) == 2 and _answers(port)):
                assert process.poll() is None, process.stderr.read().decode()
                assert time.monotonic() < deadline, "the staff page did not start"
                time.sleep(0.1)
            yield process, group, port, config
        finally:
            process.kill()
            process.wait()
            process.stderr.close()


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as answer:
            return answer.status == 200
    return False


class Visitor:
    """One browser on the LAN, from its own address (all of 127/8 is this machine's loopback)."""

    def __init__(self, port: int, address: str = "127.0.0.1", timeout: float = 120):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(address, 0))
        self.cookie = ""
        self.token = ""

    def get(self, path: str) -> tuple[int, str]:
        self.conn.request("GET", path, headers={"Cookie": self.cookie, "Accept-Language": "en"})
        return self._answer()

    def post(self, path: str, form: dict) -> tuple[int, str]:
        body = urlencode({"csrf_token": self.token, **form})
        self.conn.request("POST", path, body, headers={
            "Cookie": self.cookie, "Accept-Language": "en", "Content-Type": "application/x-www-form-urlencoded",
        })
        return self._answer()

    def open_login_page(self) -> None:
        status, page = self.get("/login")
        assert status == 200
        self.token = _CSRF.search(page).group(1)

    def _answer(self) -> tuple[int, str]:
        answer = self.conn.getresponse()
        page = answer.read().decode()
        cookie = answer.getheader("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return answer.status, page

    def close(self) -> None:
        self.conn.close()


def _staff_can_log_in(port: int) -> bool:
    visitor = Visitor(port, "127.0.0.250")
    try:
        visitor.open_login_page()
        status, _ = visitor.post("/login", {"username": "admin", "password": PASSWORDS["admin"]})
        return status == 302 and visitor.get("/cards")[0] == 200
    finally:
        visitor.close()


def test_fifty_anonymous_logins_at_once_leave_the_page_up(tmp_path):
    """Made-up usernames from 50 addresses: neither the throttle nor an account stops a password check."""
    with staff_page_in_cgroup(tmp_path, "logins") as (process, group, port, _):
        visitors = [Visitor(port, f"127.0.0.{2 + n}") for n in range(50)]
        for visitor in visitors:
            visitor.open_login_page()
        start = threading.Barrier(len(visitors))

        def attempt(n: int) -> int:
            start.wait()
            return visitors[n].post("/login", {"username": f"nosuchuser{n}", "password": "guess-1234567"})[0]

        try:
            with ThreadPoolExecutor(len(visitors)) as pool:
                statuses = list(pool.map(attempt, range(len(visitors))))
        finally:
            for visitor in visitors:
                visitor.close()
        peaks = " + ".join(f"{_peak_rss_mb(pid):.0f}" for pid in group.pids())
        print(f"50 logins at once: {sorted(set(statuses))}, peak RSS {peaks} MB, cgroup peak {group.peak_mb:.0f} MB of {LIMIT_MB}")
        assert group.oom_kills == 0 and process.poll() is None and len(group.pids()) == 2
        assert set(statuses) <= {401, 429} and 401 in statuses
        assert _staff_can_log_in(port)


def _post_raw(port: int, address: str, megabytes: int) -> bytes:
    """An anonymous POST of ``megabytes`` MB, sent as fast as the server takes it; the status line answered."""
    chunk = b"x" * 2**20
    with socket.create_connection(("127.0.0.1", port), timeout=120, source_address=(address, 0)) as raw:
        raw.sendall(b"POST /login HTTP/1.1\r\nHost: omaovi\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    b"Content-Length: %d\r\n\r\n" % (megabytes * 2**20))
        with contextlib.suppress(OSError):  # a server that answers early may close before the rest is sent
            for _ in range(megabytes):
                raw.sendall(chunk)
        return raw.makefile("rb").readline()


def test_ten_anonymous_60_mb_bodies_at_once_leave_the_page_up(tmp_path):
    with staff_page_in_cgroup(tmp_path, "bodies") as (process, group, port, _):
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(lambda n: _post_raw(port, f"127.0.0.{2 + n}", 60), range(10)))
        peaks = " + ".join(f"{_peak_rss_mb(pid):.0f}" for pid in group.pids())
        print(f"ten 60 MB bodies: {sorted(set(answers))}, peak RSS {peaks} MB, cgroup peak {group.peak_mb:.0f} MB of {LIMIT_MB}")
        assert group.oom_kills == 0 and process.poll() is None and len(group.pids()) == 2
        assert all(answer.startswith(b"HTTP/1.1 413 ") for answer in answers)
        assert _staff_can_log_in(port)


# -- the documented biggest patron CSV (issue 14, item 5) ------------------------------
CSV_BYTES = 32 * 2**20 - 4096  # the upload limit, less room for the form around the file


def _patron_csv(path: Path) -> int:
    """A patron CSV of CSV_BYTES, as the library system exports it; returns its number of patrons."""
    header = b"card_number,self_service,blocked_reason,valid_until,age_ok_from,staff\n"
    row = b"%014d,1,,2099-12-31,2000-01-01,0\n"
    count = (CSV_BYTES - len(header)) // len(row % 0)
    with path.open("wb") as out:
        out.write(header)
        for start in range(0, count, 10_000):
            out.write(b"".join(row % (27_000_000_000_000 + n) for n in range(start, min(count, start + 10_000))))
    return count


def test_a_32_mb_patron_csv_is_imported_from_the_console_within_the_limit(tmp_path):
    rows = _patron_csv(tmp_path / "patrons.csv")
    config = write_branch(tmp_path)
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with memory_cgroup("csv-cli", LIMIT_MB) as group, out.open("w") as stdout, err.open("w") as stderr:
        child = Child(
            [sys.executable, "-m", "device.cli", "patrons", "import", "--replace", str(tmp_path / "patrons.csv"),
             "-c", str(config.path)],
            cwd=REPO, stdout=stdout, stderr=stderr, preexec_fn=group.add_self,
        )
        done = child.wait(600)  # kills it if it is still running then
        print(f"32 MB CSV, {rows} rows, from the console: peak RSS {done.peak_rss_mb:.0f} MB, "
              f"cgroup peak {group.peak_mb:.0f} MB of {LIMIT_MB} (page cache included)")
        assert group.oom_kills == 0 and done.returncode == 0, err.read_text()[-2000:]
    assert f"Imported {rows} patron(s) (cache replaced)." in out.read_text()
    assert err.read_text().strip().splitlines()[-1] == f"100% of {CSV_BYTES / 2**20:.1f} MB read, {rows:,} rows"
    store = Store(config.database)
    assert store.patron_count() == rows
    store.close()


def test_a_32_mb_patron_csv_is_uploaded_on_the_staff_page_within_the_limit(tmp_path):
    rows = _patron_csv(tmp_path / "patrons.csv")
    with staff_page_in_cgroup(tmp_path, "csv-web") as (process, group, port, config):
        url = f"http://127.0.0.1:{port}"
        admin = requests.Session()
        token = _CSRF.search(admin.get(f"{url}/login").text).group(1)
        admin.post(f"{url}/login", data={"csrf_token": token, "username": "admin", "password": PASSWORDS["admin"]})
        token = _CSRF.search(admin.get(f"{url}/cards").text).group(1)
        with (tmp_path / "patrons.csv").open("rb") as upload:
            answer = admin.post(f"{url}/cards/import", data={"csrf_token": token, "replace": "1"},
                                files={"csv_file": ("patrons.csv", upload)}, headers={"Accept-Language": "en"}, timeout=600)
        peaks = " + ".join(f"{_peak_rss_mb(pid):.0f}" for pid in group.pids())
        print(f"32 MB CSV, {rows} rows, on the staff page: peak RSS {peaks} MB, "
              f"cgroup peak {group.peak_mb:.0f} MB of {LIMIT_MB} (page cache included)")
        assert group.oom_kills == 0 and process.poll() is None and len(group.pids()) == 2
        assert answer.status_code == 200 and f"Imported {rows} patrons from the file." in answer.text
        assert f"Last import: {rows:,} patrons".replace(",", "\u00a0") in answer.text
        store = Store(config.database)
        assert store.patron_count() == rows
        store.close()
