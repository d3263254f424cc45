"""The staff page over HTTPS, as the installer sets it up: nginx with the shipped site
config and the certificate from the installer's local CA, in front of ``omaovi web``
on 127.0.0.1 (issue 14, item 6).

A staff browser that trusts the CA gets the page with a Secure login cookie; one
that does not trust it is refused by its own TLS check; plain http:// only
redirects, and hands out the CA's certificate.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.simulated import child_env
from admin_web import accounts
from device.store import Store
from tests.webclient import _CSRF, PASSWORDS, write_branch

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_listening(port: int, process: subprocess.Popen, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on port {port} (exit status {process.poll()})")
        time.sleep(0.05)


@contextlib.contextmanager
def started(command: list[str], **kwargs):
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    prefix = tmp_path_factory.mktemp("root")
    result = subprocess.run(["bash", str(ROOT / "systemd/install.sh"), "--prefix", str(prefix), "--no-venv"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return prefix


@pytest.fixture
def proxy(installed, tmp_path):
    """``omaovi web`` on 127.0.0.1 and nginx with the installed site in front of it, on free ports:
    (http port, https port, the CA certificate, the web's own port)."""
    assert os.access(NGINX, os.X_OK), "nginx is missing: ./dev test installs it (apt package nginx)"
    web_port, http_port, https_port = free_port(), free_port(), free_port()
    config = write_branch(tmp_path)
    with contextlib.closing(Store(config.database)) as store:
        accounts.add_user(store, "staff", PASSWORDS["staff"], "staff")
    config.path.write_text(config.path.read_text().replace("[web]\n", f"[web]\nport = {web_port}\nworkers = 1\n"))
    site = (installed / "etc/nginx/sites-available/omaovi").read_text()
    site = site.replace("listen 80 ", f"listen 127.0.0.1:{http_port} ").replace("listen 443 ", f"listen 127.0.0.1:{https_port} ")
    site = site.replace("127.0.0.1:8080", f"127.0.0.1:{web_port}")
    site = "\n".join(line for line in site.splitlines() if "listen [::]" not in line)  # the test binds IPv4 only
    (tmp_path / "site.conf").write_text(site)
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    (tmp_path / "nginx.conf").write_text(f"""\
# Workers as root only because pytest's temporary directory is root's alone; on the
# Pi they run as www-data and /opt/omaovi is readable by everyone.
user root;
pid {tmp_path}/nginx.pid;
error_log stderr;
events {{}}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {tmp_path}/site.conf;
}}
""")
    web_command = [sys.executable, "-m", "device.cli", "web", "-c", str(config.path)]
    nginx_command = [NGINX, "-e", "stderr", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"]
    with started(web_command, cwd=ROOT, env=child_env(PATH=os.environ.get("PATH", "/usr/bin:/bin"))) as web, \
            started(nginx_command) as nginx:
        wait_until_listening(web_port, web)
        wait_until_listening(https_port, nginx)
        yield http_port, https_port, installed / "etc/omaovi/tls/ca.crt", web_port


def test_the_installers_certificate_is_issued_by_its_constrained_local_ca(installed):
    tls = installed / "etc/omaovi/tls"
    assert subprocess.run(["openssl", "verify", "-CAfile", tls / "ca.crt", tls / "server.crt"],
                          capture_output=True, text=True).stdout.strip().endswith("OK")
    ca = subprocess.run(["openssl", "x509", "-in", tls / "ca.crt", "-noout", "-text"], capture_output=True, text=True).stdout
    assert "Name Constraints: critical" in ca and "IP:192.168.0.0/255.255.0.0" in ca
    for secret in ("ca.key", "server.key"):
        assert (tls / secret).stat().st_mode & 0o077 == 0
    assert (installed / "opt/omaovi/omaovi-ca.crt").read_bytes() == (tls / "ca.crt").read_bytes()


def test_a_staff_browser_trusting_the_local_ca_gets_the_page_over_https_with_a_secure_cookie(proxy):
    _, https_port, ca, _ = proxy
    trusting = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(f"https://127.0.0.1:{https_port}/login", context=trusting, timeout=10) as answer:
        assert answer.status == 200 and "omaovi" in answer.read().decode()
        assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
        cookies = answer.headers.get_all("Set-Cookie") or []
        assert cookies and all("Secure" in cookie for cookie in cookies)


def test_staff_log_in_through_the_proxy_and_stay_logged_in(proxy):
    """The whole round: the form's CSRF token, the password over TLS, the Secure session
    cookie sent back, and the page behind the login."""
    import requests

    _, https_port, ca, _ = proxy
    url = f"https://127.0.0.1:{https_port}"
    with requests.Session() as browser:
        browser.trust_env = False
        browser.verify = str(ca)
        token = _CSRF.search(browser.get(f"{url}/login", timeout=10).text).group(1)
        answer = browser.post(f"{url}/login", data={"csrf_token": token, "username": "staff", "password": PASSWORDS["staff"]},
                              allow_redirects=False, timeout=10)
        assert answer.status_code == 302 and "Secure" in answer.headers["Set-Cookie"]
        assert browser.get(f"{url}/hours", allow_redirects=False, timeout=10).status_code == 200


def test_a_browser_that_does_not_trust_the_ca_is_stopped_by_its_own_tls_check(proxy):
    _, https_port, _, _ = proxy
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"https://127.0.0.1:{https_port}/login", context=ssl.create_default_context(), timeout=10)
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)


def test_plain_http_only_redirects_and_hands_out_the_ca_certificate(proxy):
    http_port, _, ca, _ = proxy
    connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    try:
        connection.request("POST", "/login", body="username=staff&password=secret",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        answer = connection.getresponse()
        assert answer.status == 301 and answer.getheader("Location") == "https://127.0.0.1/login"
        assert "omaovi_session" not in (answer.getheader("Set-Cookie") or "")
        answer.read()
        connection.request("GET", "/omaovi-ca.crt")
        answer = connection.getresponse()
        assert answer.status == 200 and answer.read() == ca.read_bytes()
    finally:
        connection.close()


def test_the_staff_page_itself_is_not_reachable_from_the_network_by_default(proxy):
    """``omaovi web`` listens on 127.0.0.1 only. Read from the kernel's socket table rather than by
    connecting to this machine's network address: tests send nothing beyond the loopback."""
    web_port = proxy[3]
    socket.create_connection(("127.0.0.1", web_port), timeout=5).close()
    assert _listening_addresses(web_port) == {"127.0.0.1"}


def _listening_addresses(port: int) -> set[str]:
    """The local addresses with a socket listening on ``port``, from /proc/net/tcp and tcp6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(_address(address))
    return found


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)