"""systemd/install.sh into a temporary prefix, and the systemd units it installs.

The installer builds a real virtualenv (about ten seconds with a warm pip cache),
so the units' ExecStart= points at an omaovi that exists and systemd-analyze
verify can check them as systemd would load them.
"""

import hashlib
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = ("omaovi-device", "omaovi-web", "omaovi-sync")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A still copy of the source: the installer reinstalls when the source changes,
    and a working tree being edited while the tests run would make that happen."""
    copy = tmp_path_factory.mktemp("checkout")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, copy / name)
    for name in ("device", "admin_web", "sync", "central", "examples", "systemd"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def install(source: Path, prefix: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["bash", str(source / "systemd/install.sh"), "--prefix", str(prefix), *args], capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def tree(prefix: Path) -> dict[str, tuple]:
    """Every file, directory and link under prefix with its mode, mtime and content hash."""
    listing = {}
    for path in sorted(prefix.rglob("*")):
        st = path.lstat()
        if stat.S_ISREG(st.st_mode):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
        else:
            content = None
        listing[str(path.relative_to(prefix))] = (stat.filemode(st.st_mode), st.st_mtime_ns, content)
    return listing


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: ./dev test installs it (apt package systemd)"
    return tool


@pytest.fixture(scope="module")
def installed(tmp_path_factory, checkout):
    prefix = tmp_path_factory.mktemp("root")
    first = install(checkout, prefix, "--generate-key")
    return prefix, first


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_installs_everything_under_the_prefix(installed):
    prefix, first = installed
    omaovi = prefix / "opt/omaovi/venv/bin/omaovi"
    assert os.access(omaovi, os.X_OK)
    assert os.readlink(prefix / "usr/local/bin/omaovi") == str(omaovi)
    assert mode(prefix / "etc/omaovi") == 0o750
    assert mode(prefix / "etc/omaovi/omaovi.toml") == 0o640
    assert mode(prefix / "etc/omaovi/consortium.key") == 0o640
    assert mode(prefix / "var/lib/omaovi") == 0o750
    for unit in UNITS:
        assert mode(prefix / f"etc/systemd/system/{unit}.service") == 0o644
    assert "generated a NEW consortium key" in first.stdout and "replace it with" in first.stdout


def test_the_installed_config_is_the_example_with_paths_under_the_prefix_and_is_valid(installed, checkout):
    prefix, _ = installed
    config = prefix / "etc/omaovi/omaovi.toml"
    text = config.read_text()
    assert f'database = "{prefix}/var/lib/omaovi/omaovi.db"' in text
    assert f'consortium_key_file = "{prefix}/etc/omaovi/consortium.key"' in text
    assert text == (checkout / "examples/omaovi.toml").read_text().replace("/etc/omaovi", f"{prefix}/etc/omaovi").replace(
        "/var/lib/omaovi", f"{prefix}/var/lib/omaovi")
    check = subprocess.run([prefix / "opt/omaovi/venv/bin/omaovi", "check-config", config], capture_output=True, text=True)
    assert check.returncode == 0 and "OK — branch kallio" in check.stdout
    key = subprocess.run([prefix / "opt/omaovi/venv/bin/omaovi", "card-key", "10000001", "-c", config], capture_output=True, text=True)
    assert key.returncode == 0 and re.fullmatch(r"[0-9a-f]{64}\n", key.stdout)


def test_the_example_configs_pin_pepper_is_prepared_so_doctor_passes_it(installed):
    """The example turns on card + PIN; a fresh install must not fail doctor for want of its pepper."""
    prefix, first = installed
    pepper = prefix / "etc/omaovi/pin.pepper"
    assert mode(pepper) == 0o640 and len(pepper.read_bytes().strip()) >= 16
    assert f"PIN pepper in {pepper}" in first.stdout
    config = prefix / "etc/omaovi/omaovi.toml"
    doctor = subprocess.run([prefix / "opt/omaovi/venv/bin/omaovi", "doctor", "-c", config], capture_output=True, text=True)
    pepper_lines = [line for line in doctor.stdout.splitlines() if "PIN pepper" in line]
    assert pepper_lines and all("FAIL" not in line for line in pepper_lines), doctor.stdout


def test_units_run_the_installed_omaovi_with_the_installed_config(installed):
    prefix, _ = installed
    for unit in UNITS:
        text = (prefix / f"etc/systemd/system/{unit}.service").read_text()
        command = unit.removeprefix("omaovi-")
        assert f"ExecStart={prefix}/opt/omaovi/venv/bin/omaovi {command} --config {prefix}/etc/omaovi/omaovi.toml\n" in text
        assert "Restart=always\n" in text and "User=omaovi\n" in text and "StateDirectory=omaovi\n" in text
        for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "MemoryMax="):
            assert setting in text, (unit, setting)


def test_the_device_unit_needs_no_network_and_is_watched(installed):
    prefix, _ = installed
    text = (prefix / "etc/systemd/system/omaovi-device.service").read_text()
    assert "Type=notify\n" in text and "WatchdogSec=30\n" in text
    assert "network" not in "".join(line for line in text.splitlines() if line.startswith(("After=", "Wants=", "Requires=")))
    assert "RestrictAddressFamilies=AF_UNIX\n" in text and "PrivateNetwork=yes\n" in text
    # The door needs /dev/gpiochip*, /dev/gpiomem, /dev/spidev*, /dev/tty* and /dev/input.
    assert not re.search(r"^(PrivateDevices|DevicePolicy|DeviceAllow|ProtectClock)=", text, re.M)
    groups = re.search(r"^SupplementaryGroups=(.*)$", text, re.M).group(1).split()
    present = [g for g in ("gpio", "spi", "i2c", "dialout", "input", "audio") if subprocess.run(["getent", "group", g], capture_output=True).returncode == 0]
    assert groups == present  # systemd refuses to start a unit naming a missing group
    assert "WantedBy=multi-user.target" in text


def test_the_web_unit_yields_the_cpu_to_the_door(installed):
    """The web's worker processes may keep the CPU busy under a burst of requests;
    the door controller must still come first."""
    prefix, _ = installed
    web = (prefix / "etc/systemd/system/omaovi-web.service").read_text()
    device = (prefix / "etc/systemd/system/omaovi-device.service").read_text()

    def setting(text: str, name: str, default: int) -> int:
        found = re.search(rf"^{name}=(-?\d+)$", text, re.M)
        return int(found.group(1)) if found else default

    assert setting(web, "CPUWeight", 100) < setting(device, "CPUWeight", 100)
    assert setting(web, "Nice", 0) > setting(device, "Nice", 0)


def test_a_second_run_changes_nothing(installed, checkout):
    prefix, _ = installed
    before = tree(prefix)
    again = install(checkout, prefix, "--generate-key")
    assert tree(prefix) == before
    assert "wrote" not in again.stdout and "installing" not in again.stdout and "generated" not in again.stdout


def test_systemd_analyze_verify_accepts_the_units(installed):
    prefix, _ = installed
    units = [str(prefix / f"etc/systemd/system/{unit}.service") for unit in UNITS]
    result = subprocess.run([systemd_analyze(), "verify", *units], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr


def test_systemd_analyze_security_rates_every_unit_ok(installed):
    """A regression guard on the hardening: "OK" is systemd's best band (exposure below 2)."""
    prefix, _ = installed
    for unit in UNITS:
        path = prefix / f"etc/systemd/system/{unit}.service"
        result = subprocess.run([systemd_analyze(), "security", "--offline=true", str(path)], capture_output=True, text=True)
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
        assert match, result.stdout + result.stderr
        assert float(match.group(1)) < 2.0 and match.group(2) == "OK", (unit, match.group(0))


def test_an_edited_config_and_the_real_key_are_never_overwritten(tmp_path, checkout):
    install(checkout, tmp_path, "--no-venv")
    config = tmp_path / "etc/omaovi/omaovi.toml"
    key = tmp_path / "etc/omaovi/consortium.key"
    assert not key.exists()
    config.write_text(config.read_text().replace('branch = "kallio"', 'branch = "toolo"'))
    key.write_text("the-consortiums-real-key-0123456789\n")
    key.chmod(0o600)
    result = install(checkout, tmp_path, "--no-venv", "--generate-key")
    assert 'branch = "toolo"' in config.read_text()
    assert key.read_text() == "the-consortiums-real-key-0123456789\n"
    assert mode(key) == 0o640  # the mode is put right, the content kept
    assert "generated" not in result.stdout
    assert not (tmp_path / "opt/omaovi/venv").exists()


def test_without_a_key_it_says_how_to_place_the_real_one(tmp_path, checkout):
    result = install(checkout, tmp_path, "--no-venv")
    assert f"sudo install -m 0640 -o root -g omaovi THE-KEY-FILE {tmp_path}/etc/omaovi/consortium.key" in result.stdout


def test_an_unknown_option_is_refused(tmp_path):
    result = subprocess.run(["bash", str(ROOT / "systemd/install.sh"), "--prefix", str(tmp_path), "--frobnicate"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown option --frobnicate" in result.stderr
    assert not (tmp_path / "etc").exists()



@pytest.mark.parametrize("name", ["-dash", "a&b", "c#d"])
def test_a_prefix_with_characters_special_to_the_tools_is_only_a_directory_name(tmp_path, checkout, name):
    """Given relative to the directory it runs in, so "-dash" reaches realpath as written."""
    result = subprocess.run(["bash", str(checkout / "systemd/install.sh"), "--no-venv", f"--prefix={name}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = tmp_path / name
    unit = (prefix / "etc/systemd/system/omaovi-device.service").read_text()
    assert f"ExecStart={prefix}/opt/omaovi/venv/bin/omaovi device --config {prefix}/etc/omaovi/omaovi.toml" in unit
    assert f'database = "{prefix}/var/lib/omaovi/omaovi.db"' in (prefix / "etc/omaovi/omaovi.toml").read_text()


# -- the SIP2 server through the device unit -------------------------------------------

SIP2_HOST = "192.0.2.10"
SIP2 = f"""
[sip2]
host = "{SIP2_HOST}"
port = 6001
username = "ovi"
password_file = "sip2.password"
institution = "KIRJASTO"
profile = "koha"
"""


def device_unit(prefix: Path) -> list[str]:
    from device.unit_network import installed_unit_texts

    return installed_unit_texts(prefix / "etc/systemd/system")


def test_the_installed_device_unit_lets_the_sip2_server_through_and_nothing_else(tmp_path, checkout):
    from device.unit_network import may_connect

    prefix = tmp_path / "root"
    install(checkout, prefix)
    config = prefix / "etc/omaovi/omaovi.toml"
    # As shipped, with no [sip2]: no network at all, and no drop-in.
    assert not (prefix / "etc/systemd/system/omaovi-device.service.d/sip2.conf").exists()
    assert not may_connect(device_unit(prefix), SIP2_HOST)

    config.write_text(config.read_text() + SIP2)
    again = install(checkout, prefix)

    dropin = prefix / "etc/systemd/system/omaovi-device.service.d/sip2.conf"
    assert f"wrote {dropin}" in again.stdout
    texts = device_unit(prefix)
    assert may_connect(texts, SIP2_HOST)
    for other in ("192.0.2.11", "10.0.0.1", "127.0.0.1", "8.8.8.8", "::1", "2001:db8::1"):
        assert not may_connect(texts, other), other
    # systemd reads the drop-in the same way: no complaint, and an allow-list over deny-all.
    env = os.environ | {"SYSTEMD_UNIT_PATH": f"{prefix}/etc/systemd/system:"}
    unit = str(prefix / "etc/systemd/system/omaovi-device.service")
    verify = subprocess.run([systemd_analyze(), "verify", unit], capture_output=True, text=True, env=env)
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    security = subprocess.run([systemd_analyze(), "security", "--offline=true", unit], capture_output=True, text=True, env=env)
    assert "IP address allow list with non-localhost entries" in security.stdout
    assert "Service has access to the host's network" in security.stdout
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", security.stdout)
    assert float(match.group(1)) < 2.0 and match.group(2) == "OK", match.group(0)

    # The section removed: the drop-in goes, and the device has no network again.
    config.write_text(config.read_text().replace(SIP2, ""))
    install(checkout, prefix)
    assert not dropin.exists()
    assert not may_connect(device_unit(prefix), SIP2_HOST)


def test_database_files_the_service_user_does_not_own_are_named(tmp_path, checkout):
    """``sudo sqlite3 omaovi.db`` leaves a root-owned -wal and -shm, and the device cannot
    write the database. On the machine itself the installer gives them back to omaovi;
    under a prefix (no omaovi user to give them to) it names them."""
    install(checkout, tmp_path, "--no-venv")
    state = tmp_path / "var/lib/omaovi"
    wal, shm = state / "omaovi.db-wal", state / "omaovi.db-shm"
    wal.write_bytes(b"")
    shm.write_bytes(b"")
    os.chown(wal, 65534, 65534)
    result = install(checkout, tmp_path, "--no-venv")
    me = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    assert f"{wal} belongs to nobody, not to {me}: the device cannot write it" in result.stdout
    assert str(shm) not in result.stdout


def unit_values(text: str, name: str) -> list[str]:
    """Every value of a setting, as systemd merges repeated lines ("-" optional-path prefixes kept)."""
    return [value for line in re.findall(rf"^{name}=(.*)$", text, re.M) for value in line.split()]


def test_each_secret_reaches_only_the_unit_that_needs_it(installed):
    """The web unit runs as the same user as sync and the device, yet cannot read the
    central token or the SIP2 password: it is in neither secret's group, and the files
    are not there for it at all. systemd-analyze verify (above) accepts the settings."""
    prefix, _ = installed
    etc = prefix / "etc/omaovi"
    units = {unit: (prefix / f"etc/systemd/system/{unit}.service").read_text() for unit in UNITS}
    token, password = f"-{etc}/central.token", f"-{etc}/sip2.password"
    assert "omaovi-central" in unit_values(units["omaovi-sync"], "SupplementaryGroups")
    assert "omaovi-sip2" in unit_values(units["omaovi-device"], "SupplementaryGroups")
    assert "omaovi-sip2" not in unit_values(units["omaovi-sync"], "SupplementaryGroups")
    assert "omaovi-central" not in unit_values(units["omaovi-device"], "SupplementaryGroups")
    web_groups = unit_values(units["omaovi-web"], "SupplementaryGroups")
    assert not {"omaovi-central", "omaovi-sip2"} & set(web_groups)
    assert {token, password} <= set(unit_values(units["omaovi-web"], "InaccessiblePaths"))
    # The example config points at exactly these files.
    example = (ROOT / "examples/omaovi.toml").read_text()
    assert 'password_file = "/etc/omaovi/sip2.password"' in example


def test_secret_files_lose_every_other_users_access(tmp_path, checkout):
    install(checkout, tmp_path, "--no-venv")
    etc = tmp_path / "etc/omaovi"
    for name in ("central.token", "sip2.password"):
        (etc / name).write_text("s3cret\n")
        (etc / name).chmod(0o644)
    install(checkout, tmp_path, "--no-venv")
    assert mode(etc / "central.token") == 0o640 and mode(etc / "sip2.password") == 0o640


def test_the_https_proxy_is_installed_in_place_of_nginxs_default_site(tmp_path, checkout):
    enabled = tmp_path / "etc/nginx/sites-enabled"
    enabled.mkdir(parents=True)
    (enabled / "default").symlink_to("/etc/nginx/sites-available/default")
    result = install(checkout, tmp_path, "--no-venv")
    assert os.readlink(enabled / "omaovi") == "../sites-available/omaovi" and not (enabled / "default").is_symlink()
    site = (tmp_path / "etc/nginx/sites-available/omaovi").read_text()
    assert f"ssl_certificate {tmp_path}/etc/omaovi/tls/server.crt;" in site
    assert "disabled nginx's default site" in result.stdout and "SHA-256 fingerprint" in result.stdout
