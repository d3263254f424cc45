"""``omaovi doctor`` as an installer runs it: a healthy branch passes, each broken part fails with its fix."""

import io
import os
import pwd
import socket
import sqlite3
import subprocess
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from gpiozero import OutputDevice
from gpiozero.pins.mock import MockFactory

from device.cli import main
from device import doctor as doctor_module
from device.doctor import FAIL, OK, WARN, Doctor, pulse, report
from device.readers import build_reader
from device.readers.mfrc522_reader import Mfrc522Reader
from device.store import MIGRATIONS, Store
from tests.central_server import CentralServer
from tests.sip2_server import PERSONAL, FakePatron, Sip2Peer

ME = pwd.getpwuid(os.geteuid()).pw_name


def branch_config(serial_device, *, database="omaovi.db", extra=""):
    return f"""\
branch = "kallio"
database = "{database}"
consortium_key_file = "consortium.key"

[[doors]]
id = "entrance"
kind = "entrance"
lock_pin = 17
lock_active_high = false
unlock_seconds = 2
contact_pin = 27
exit_button_pin = 22

[doors.reader]
type = "serial"
device = "{serial_device}"
{extra}"""


@pytest.fixture
def pty_reader():
    """A serial card reader as the kernel shows it: the slave end of a pty."""
    master, slave = os.openpty()
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


@pytest.fixture
def healthy(tmp_path, pty_reader):
    (tmp_path / "omaovi.toml").write_text(branch_config(pty_reader))
    key = tmp_path / "consortium.key"
    key.write_text("k" * 32 + "\n")
    key.chmod(0o640)
    Store(tmp_path / "omaovi.db").close()
    return tmp_path


def doctor(factory=None, ntp="yes", **kw):
    def ntp_synchronized():
        if isinstance(ntp, Exception):
            raise ntp
        return ntp

    return Doctor(pin_factory=factory or MockFactory(), ntp_synchronized=ntp_synchronized, service_user=ME, **kw)


def by_name(checks):
    return {c.name: c for c in checks}


def test_a_healthy_branch_passes_every_check(healthy, pty_reader):
    checks = doctor().run(healthy / "omaovi.toml")
    statuses = {c.name: c.status for c in checks}
    assert statuses == {
        "config": OK, "database": OK, "consortium key": OK, "reader entrance": OK, "pins entrance": OK,
        "clock": OK, "central service": "--", "SIP2": "--", "secret files": "--",
    }
    found = by_name(checks)
    assert f"schema version {len(MIGRATIONS)} (current)" in found["database"].detail
    assert found["reader entrance"].detail == f"serial {pty_reader} opens"
    assert found["pins entrance"].detail == "free: lock_pin GPIO17, contact_pin GPIO27, exit_button_pin GPIO22"
    out = io.StringIO()
    assert report(checks, out) == 0
    assert out.getvalue().splitlines()[-1] == "All checks passed."
    assert "OK    config: " in out.getvalue() and "--    central service: not configured" in out.getvalue()


def test_a_serial_keypad_that_cannot_be_opened_fails_and_says_the_door_opens_by_card_alone(healthy, pty_reader):
    keypad = '[doors.keypad]\ntype = "serial"\ndevice = "{}"\n'
    config = healthy / "omaovi.toml"
    config.write_text(branch_config(pty_reader, extra=keypad.format("/dev/ttyUSB-OMAOVI-NO-SUCH-KEYPAD")))
    check = by_name(doctor().run(config))["keypad entrance"]
    assert check.status == FAIL
    assert "cannot open /dev/ttyUSB-OMAOVI-NO-SUCH-KEYPAD" in check.detail
    assert "opens by card alone, without a PIN" in check.detail and "dialout" in check.hint

    master, slave = os.openpty()
    try:
        config.write_text(branch_config(pty_reader, extra=keypad.format(os.ttyname(slave))))
        check = by_name(doctor().run(config))["keypad entrance"]
        assert (check.status, check.detail) == (OK, f"serial {os.ttyname(slave)} opens")
    finally:
        os.close(master)
        os.close(slave)


def test_claiming_the_pins_leaves_the_lock_relay_released(healthy):
    factory = MockFactory()
    doctor(factory).run(healthy / "omaovi.toml")
    assert factory.pin(17).state == 1  # lock_active_high = false: high is released (locked)


def test_a_broken_branch_fails_each_broken_part_with_a_fix(tmp_path):
    (tmp_path / "not-a-directory").write_text("")
    (tmp_path / "omaovi.toml").write_text(
        branch_config("/dev/ttyOMAOVI-NO-SUCH-READER", database="not-a-directory/omaovi.db")
    )
    (tmp_path / "consortium.key").write_text("too-short\n")
    checks = by_name(doctor(ntp="no").run(tmp_path / "omaovi.toml"))

    assert checks["reader entrance"].status == FAIL
    assert "cannot open serial port /dev/ttyOMAOVI-NO-SUCH-READER" in checks["reader entrance"].detail
    assert "dialout" in checks["reader entrance"].hint

    assert checks["database"].status == FAIL
    assert "not-a-directory is not a directory" in checks["database"].detail
    assert checks["database"].hint.startswith("sudo install -d")

    assert checks["consortium key"].status == FAIL
    assert "the consortium key is 9 bytes; it must be at least 16" in checks["consortium key"].detail

    assert checks["clock"].status == FAIL and "timedatectl set-ntp true" in checks["clock"].hint

    out = io.StringIO()
    assert report(list(checks.values()), out) == 1
    text = out.getvalue()
    assert "FAIL  database: " in text and "      fix: sudo install -d" in text
    assert text.splitlines()[-1] == "4 failed, 0 warning(s)."


def test_a_database_the_service_user_cannot_write_fails(healthy):
    """What happens when root creates the database: the device, running as omaovi, cannot write it."""
    (healthy / "omaovi.db").chmod(0o644)
    other = "nobody" if ME != "nobody" else "root"
    checks = by_name(Doctor(pin_factory=MockFactory(), ntp_synchronized=lambda: "yes", service_user=other).run(healthy / "omaovi.toml"))
    assert checks["database"].status == FAIL
    assert f"is not writable by the {other} user" in checks["database"].detail
    assert checks["database"].hint.startswith(f"sudo chown {other}:{other} ")


def test_a_database_from_a_newer_omaovi_fails_and_an_older_one_warns(healthy):
    conn = sqlite3.connect(healthy / "omaovi.db")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    assert by_name(doctor().run(healthy / "omaovi.toml"))["database"].status == FAIL
    conn = sqlite3.connect(healthy / "omaovi.db")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) - 1}")
    conn.close()
    check = by_name(doctor().run(healthy / "omaovi.toml"))["database"]
    assert check.status == WARN and "restart the device" in check.hint


def test_a_world_readable_key_fails(healthy):
    (healthy / "consortium.key").chmod(0o644)
    check = by_name(doctor().run(healthy / "omaovi.toml"))["consortium key"]
    assert check.status == FAIL and check.hint == f"sudo chmod 0640 {healthy / 'consortium.key'}"


def test_a_pin_held_by_another_program_fails(healthy):
    factory = MockFactory()
    holder = OutputDevice(22, pin_factory=factory)  # the running device, say
    try:
        check = by_name(doctor(factory).run(healthy / "omaovi.toml"))["pins entrance"]
    finally:
        holder.close()
    assert check.status == FAIL and "systemctl stop omaovi-device" in check.hint


def test_an_unknown_clock_state_warns(healthy):
    check = by_name(doctor(ntp=FileNotFoundError("timedatectl")).run(healthy / "omaovi.toml"))["clock"]
    assert check.status == WARN and "cannot tell" in check.detail


def test_an_invalid_config_fails_with_the_check_config_hint(tmp_path):
    (tmp_path / "omaovi.toml").write_text('branch = "Kallio!"\n')
    checks = doctor().run(tmp_path / "omaovi.toml")
    assert [c.status for c in checks] == [FAIL]
    assert "branch" in checks[0].detail and checks[0].hint.startswith("omaovi check-config")


class FakeChip:
    """An RC522 as mfrc522.MFRC522 shows it: version register and TX control register."""

    def __init__(self, version):
        self.registers = {0x37: version, 0x14: 0x83}
        self.spi = type("Spi", (), {"close": lambda self: None})()

    def Read_MFRC522(self, register):
        return self.registers[register]


@pytest.mark.parametrize("version, status", [(0x92, OK), (0x00, FAIL)])
def test_an_rc522_is_asked_for_its_version(tmp_path, version, status):
    (tmp_path / "omaovi.toml").write_text(branch_config("x").replace(
        'type = "serial"\ndevice = "x"', 'type = "mfrc522"'))
    (tmp_path / "consortium.key").write_text("k" * 32)
    (tmp_path / "spidev0.0").touch()

    def make(cfg):
        if cfg.type != "mfrc522":
            return build_reader(cfg)
        return Mfrc522Reader(cfg, lambda **_: FakeChip(version), spidev_prefix=str(tmp_path / "spidev"))

    check = by_name(doctor(build_reader=make).run(tmp_path / "omaovi.toml"))["reader entrance"]
    assert check.status == status
    if status == OK:
        assert check.detail == "mfrc522 spi0.0 answers, chip version 0x92"
    else:
        assert "does not answer (version register 0x00)" in check.detail and "do_spi" in check.hint


def test_pulse_clicks_the_relay_once_and_logs_it(healthy):
    factory = MockFactory()
    during = []
    out = io.StringIO()
    code = pulse(healthy / "omaovi.toml", "entrance", out, pin_factory=factory,
                 sleep=lambda s: during.append((s, factory.pin(17).state)))
    assert code == 0
    assert during == [(2.0, 0)]  # active low: relay on while the door should open
    assert factory.pin(17).state == 1  # and released afterwards
    assert "relay on GPIO17 for 2 s" in out.getvalue()
    events = Store(healthy / "omaovi.db").events()
    assert [(e["door"], e["type"]) for e in events] == [("entrance", "command")]
    assert '"by": "omaovi doctor"' in events[0]["detail"]


def test_pulse_of_an_unknown_door_names_the_doors(healthy):
    out = io.StringIO()
    assert pulse(healthy / "omaovi.toml", "back-door", out, pin_factory=MockFactory()) == 1
    assert "no door 'back-door'; the doors are: entrance" in out.getvalue()


def test_omaovi_doctor_exits_non_zero_when_a_check_fails(tmp_path, capsys):
    (tmp_path / "omaovi.toml").write_text(branch_config("/dev/ttyOMAOVI-NO-SUCH-READER"))
    (tmp_path / "consortium.key").write_text("k" * 32)
    (tmp_path / "consortium.key").chmod(0o640)
    assert main(["doctor", "--config", str(tmp_path / "omaovi.toml")]) == 1
    out = capsys.readouterr().out
    assert "FAIL  reader entrance: cannot open serial port" in out
    assert "OK    pins entrance: free" in out


def test_no_pin_factory_off_a_pi_gets_its_own_hint(healthy):
    from gpiozero import BadPinFactory

    class NoGpio:
        """What gpiozero gives off a Pi: every use fails with BadPinFactory."""

        def __getattr__(self, name):
            raise BadPinFactory("Unable to load any default pin factory!")

    check = by_name(doctor(NoGpio()).run(healthy / "omaovi.toml"))["pins entrance"]
    assert check.status == FAIL and "no GPIO pin factory" in check.detail
    assert "python3-lgpio" in check.hint and "systemctl stop" not in check.hint


# -- the central service and SIP2 ------------------------------------------------------------

TOKEN = "kallio-device-token-3f9c"


def central_section(url, token_file="central.token"):
    return f'\n[central]\nbase_url = "{url}"\ntoken_file = "{token_file}"\ntimeout = 2\n'


def sip2_section(port, tls=""):
    return (f'\n[sip2]\nhost = "127.0.0.1"\nport = {port}\nusername = "ovi"\npassword_file = "sip2.password"\n'
            f'institution = "KIRJASTO"\nprofile = "koha-suomi"\ntimeout = 1.5\n{tls}')


def with_sections(branch, pty_reader, extra):
    (branch / "omaovi.toml").write_text(branch_config(pty_reader, extra=extra))
    return branch / "omaovi.toml"


def no_proxy_session():
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment between us and 127.0.0.1
    return session


def closed_port():
    """A port nothing listens on: bound, then let go."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_central_service_accepting_the_token_passes(healthy, pty_reader):
    (healthy / "central.token").write_text(TOKEN + "\n")
    (healthy / "central.token").chmod(0o600)  # out of the staff page's reach, as install.sh leaves it
    with CentralServer(token=TOKEN) as server:
        path = with_sections(healthy, pty_reader, central_section(server.url))
        checks = doctor(session=no_proxy_session()).run(path)
    check = by_name(checks)["central service"]
    assert check.status == OK
    assert check.detail == f"{server.url} accepted the token for branch kallio (HTTP 200)"
    today = datetime.now(ZoneInfo("Europe/Helsinki")).date().isoformat()
    assert server.requests == [("GET", "hours", {"from": today, "to": today})]  # one request, today only
    out = io.StringIO()
    assert report(checks, out) == 0
    assert TOKEN not in out.getvalue()


def test_a_refused_token_fails_with_where_to_put_the_right_one(healthy, pty_reader):
    (healthy / "central.token").write_text("the-old-token\n")
    with CentralServer(token=TOKEN) as server:
        path = with_sections(healthy, pty_reader, central_section(server.url))
        checks = doctor(session=no_proxy_session()).run(path)
    check = by_name(checks)["central service"]
    assert check.status == FAIL and check.detail == f"{server.url}: token refused (HTTP 401)"
    assert f"central.token_file ({healthy / 'central.token'})" in check.hint
    out = io.StringIO()
    report(checks, out)
    assert "the-old-token" not in out.getvalue()


def test_a_central_service_answering_an_error_fails_with_the_status(healthy, pty_reader):
    (healthy / "central.token").write_text(TOKEN)
    with CentralServer(token=TOKEN) as server:
        server.down = True
        path = with_sections(healthy, pty_reader, central_section(server.url))
        check = by_name(doctor(session=no_proxy_session()).run(path))["central service"]
    assert check.status == FAIL and "answered HTTP 503" in check.detail
    assert len(server.requests) == 1  # no retries: the doctor reports at once


def test_an_unreachable_central_service_fails_with_a_network_hint(healthy, pty_reader):
    (healthy / "central.token").write_text(TOKEN)
    url = f"http://127.0.0.1:{closed_port()}"
    path = with_sections(healthy, pty_reader, central_section(url))
    check = by_name(doctor(session=no_proxy_session()).run(path))["central service"]
    assert check.status == FAIL and check.detail.startswith(f"{url} unreachable (")
    assert "network" in check.hint and "central.base_url" in check.hint


def test_a_missing_token_file_fails_naming_central_token_file(healthy, pty_reader):
    path = with_sections(healthy, pty_reader, central_section("http://127.0.0.1:9"))
    check = by_name(doctor(session=no_proxy_session()).run(path))["central service"]
    assert check.status == FAIL and "no such file" in check.detail
    assert f"central.token_file ({healthy / 'central.token'})" in check.hint


@pytest.fixture
def sip2_server():
    server = Sip2Peer({}, username="ovi", password="salasana-123")
    yield server
    server.stop()


def test_a_sip2_login_the_library_system_accepts_passes(healthy, pty_reader, sip2_server):
    (healthy / "sip2.password").write_text("salasana-123\n")
    (healthy / "sip2.password").chmod(0o600)  # out of the staff page's reach, as install.sh leaves it
    checks = doctor().run(with_sections(healthy, pty_reader, sip2_section(sip2_server.port)))
    check = by_name(checks)["SIP2"]
    assert check.status == OK and check.detail == f"login accepted by 127.0.0.1:{sip2_server.port}"
    assert [type(r).__name__ for r in sip2_server.requests] == ["LoginRequest"]  # no patron is asked about
    out = io.StringIO()
    assert report(checks, out) == 0
    assert "salasana-123" not in out.getvalue()


def test_a_wrong_sip2_password_fails_with_the_login_settings_to_check(healthy, pty_reader, sip2_server):
    (healthy / "sip2.password").write_text("vanha-salasana\n")
    checks = doctor().run(with_sections(healthy, pty_reader, sip2_section(sip2_server.port)))
    check = by_name(checks)["SIP2"]
    assert check.status == FAIL and check.detail == f"login refused by 127.0.0.1:{sip2_server.port}"
    assert "sip2.username" in check.hint and "sip2.password_file" in check.hint
    out = io.StringIO()
    report(checks, out)
    assert "vanha-salasana" not in out.getvalue()


def test_a_sip2_server_not_listening_fails_with_a_network_hint(healthy, pty_reader):
    (healthy / "sip2.password").write_text("salasana-123\n")
    port = closed_port()
    check = by_name(doctor().run(with_sections(healthy, pty_reader, sip2_section(port))))["SIP2"]
    assert check.status == FAIL and check.detail.startswith(f"cannot connect to 127.0.0.1:{port}: ")
    assert "sip2.host/sip2.port" in check.hint


def test_a_sip2_server_without_tls_fails_a_tls_login_with_a_tls_hint(healthy, pty_reader, sip2_server):
    (healthy / "sip2.password").write_text("salasana-123\n")
    path = with_sections(healthy, pty_reader, sip2_section(sip2_server.port, tls="tls = true\n"))
    check = by_name(doctor().run(path))["SIP2"]
    assert check.status == FAIL and "TLS" in check.detail
    assert "tls_ca_file" in check.hint


PIN_SECTION = """
[doors.keypad]
type = "matrix"
row_pins = [4, 18, 16, 12]
column_pins = [20, 21, 26]

[pin]
pepper_file = "pin.pepper"
"""


@pytest.mark.parametrize("content, mode, status, found", [
    (b"p" * 24, 0o640, OK, "24 bytes (at least 16)"),
    (b"short", 0o640, FAIL, "the PIN pepper in"),
    (b"p" * 24, 0o644, FAIL, "is readable by every user"),
    (None, None, FAIL, "does not exist"),
])
def test_the_pin_pepper_is_checked_like_the_key(tmp_path, pty_reader, content, mode, status, found):
    (tmp_path / "omaovi.toml").write_text(branch_config(pty_reader, extra=PIN_SECTION))
    (tmp_path / "consortium.key").write_text("k" * 32 + "\n")
    (tmp_path / "consortium.key").chmod(0o640)
    if content is not None:
        (tmp_path / "pin.pepper").write_bytes(content)
        (tmp_path / "pin.pepper").chmod(mode)
    check = by_name(doctor().run(tmp_path / "omaovi.toml"))["PIN pepper"]
    assert check.status == status and found in check.detail


def test_the_extras_pins_are_claimed_too(pty_reader, healthy):
    text = branch_config(pty_reader, extra=PIN_SECTION) + "\n[building]\nlights_pin = 23\nalarm_pin = 13\n"
    (healthy / "omaovi.toml").write_text(text)
    factory = MockFactory()
    checks = by_name(doctor(factory).run(healthy / "omaovi.toml"))
    assert (checks["pins building"].status, checks["pins building"].detail) == (OK, "free: lights_pin GPIO23, alarm_pin GPIO13")
    assert checks["pins entrance"].status == OK and "keypad row GPIO4" in checks["pins entrance"].detail
    assert factory.pin(23).state == 0 and factory.pin(13).state == 0, "left released"

    from gpiozero import OutputDevice

    for held, check_name in ((13, "pins building"), (26, "pins entrance")):
        blocker = OutputDevice(held, pin_factory=factory)
        try:
            check = by_name(doctor(factory).run(healthy / "omaovi.toml"))[check_name]
            assert check.status == FAIL and f"GPIO{held}" in check.detail
            OutputDevice(23 if held == 13 else 4, pin_factory=factory).close()  # what was claimed first is free again
        finally:
            blocker.close()


def test_doctor_sip2_card_shows_how_the_profile_reads_a_test_card(healthy, pty_reader, capsys):
    server = Sip2Peer({"10000001": FakePatron(extra={"PC": "AIKUINEN"})}, username="ovi", password="salasana-123",
                      shape="koha")
    try:
        (healthy / "sip2.password").write_text("salasana-123\n")
        koha = with_sections(healthy, pty_reader, sip2_section(server.port).replace('"koha-suomi"', '"koha"'))

        assert main(["doctor", "--sip2-card", "10000001", "--config", str(koha)]) == 0
        out = capsys.readouterr().out
        assert "profile koha: stock Koha" in out
        assert "BL: Y, a patron" in out and "result: allowed" in out
        assert "OK    SIP2 test card: read by profile koha" in out
        assert "10000001" not in out and PERSONAL["AE"] not in out

        # The same server with the koha-suomi profile: caught at install time, with the way out.
        suomi = with_sections(healthy, pty_reader, sip2_section(server.port))
        assert main(["doctor", "--sip2-card", "10000001", "--config", str(suomi)]) == 1
        out = capsys.readouterr().out
        assert "FAIL  SIP2 test card:" in out and "field PA is missing" in out
        assert "try sip2.profile = koha, evergreen, lenient" in out
    finally:
        server.stop()


def test_doctor_fails_sip2_when_the_installed_device_unit_blocks_the_server(healthy, pty_reader, sip2_server, tmp_path):
    from device.unit_network import sip2_dropin

    (healthy / "sip2.password").write_text("salasana-123\n")
    path = with_sections(healthy, pty_reader, sip2_section(sip2_server.port))
    units = tmp_path / "units"
    units.mkdir()
    shipped = Path(__file__).resolve().parent.parent / "systemd/omaovi-device.service"
    (units / "omaovi-device.service").write_text(shipped.read_text())

    checks = by_name(doctor(unit_dir=units).run(path))
    # The login works from here, outside the unit: that alone would hide the problem.
    assert checks["SIP2"].status == OK
    blocked = checks["SIP2 through the device unit"]
    assert blocked.status == FAIL and "the device unit blocks 127.0.0.1" in blocked.detail
    assert "install.sh" in blocked.hint

    (units / "omaovi-device.service.d").mkdir()
    from device.config import load_sections
    (units / "omaovi-device.service.d/sip2.conf").write_text(sip2_dropin(load_sections(path)[1].sip2))
    passed = by_name(doctor(unit_dir=units).run(path))["SIP2 through the device unit"]
    assert passed.status == OK and passed.detail.endswith("through, and nothing else")


def test_doctor_shows_what_the_device_itself_last_met_with_the_library_system(healthy, pty_reader, sip2_server):
    (healthy / "sip2.password").write_text("salasana-123\n")
    path = with_sections(healthy, pty_reader, sip2_section(sip2_server.port))
    store = Store(healthy / "omaovi.db")
    try:
        store.set_status("sip2", {"breaker": "open", "last_success": "2026-11-25T09:12:03.000000Z",
                                  "last_error": "cannot connect to 127.0.0.1:6001: Network is unreachable",
                                  "last_error_at": "2026-11-25T11:45:40.000000Z"})
        check = by_name(doctor().run(path))["SIP2 at the door"]
        assert check.status == FAIL and "Network is unreachable" in check.detail and "breaker open" in check.detail
        store.set_status("sip2", {"breaker": "closed", "last_success": "2026-11-25T11:50:00.000000Z",
                                  "last_error": None, "last_error_at": None})
        check = by_name(doctor().run(path))["SIP2 at the door"]
        assert check.status == OK and "2026-11-25T11:50:00" in check.detail
    finally:
        store.close()


def test_database_files_left_to_another_user_fail_even_when_root_could_write_them(healthy):
    """``sudo sqlite3 omaovi.db`` leaves a root-owned -wal and -shm. Trying to write as root
    proves nothing; the owners do, and the fix names every file to give back."""
    database = healthy / "omaovi.db"
    keep_open = Store(database)  # a live database has its -wal and -shm
    try:
        keep_open.set_status("probe", {})
        for name in ("omaovi.db-wal", "omaovi.db-shm"):
            os.chown(healthy / name, 65534, 65534)
        check = by_name(doctor().run(healthy / "omaovi.toml"))["database"]
    finally:
        keep_open.close()
    assert check.status == FAIL
    assert f"{database}-wal belongs to" in check.detail and f"{database}-shm belongs to" in check.detail
    assert f"not to the {ME} user" in check.detail and "storage-failed mode" in check.detail
    assert check.hint.startswith(f"sudo chown {ME}:{ME} {database}-wal {database}-shm")


@pytest.mark.parametrize("mode, group_is_the_service_users, problem", [
    (0o644, False, "is readable by every user"),
    (0o640, True, f"is readable by the group of the {ME} user, so by the staff page too"),
    (0o600, True, None),
])
def test_a_secret_the_staff_page_could_read_fails(healthy, pty_reader, mode, group_is_the_service_users, problem):
    """The web runs as the service user: only a group its unit lacks keeps the token from it."""
    token = healthy / "central.token"
    token.write_text(TOKEN + "\n")
    token.chmod(mode)
    os.chown(token, 0, pwd.getpwnam(ME).pw_gid if group_is_the_service_users else 65534)
    path = with_sections(healthy, pty_reader, central_section(f"http://127.0.0.1:{closed_port()}"))
    check = by_name(doctor(session=no_proxy_session()).run(path))["secret files"]
    if problem is None:
        assert check.status == OK and check.detail == f"{token} out of the staff page's reach"
    else:
        assert check.status == FAIL and check.detail.startswith(f"{token} {problem}")
        assert check.hint.startswith(f"sudo chown root:omaovi-central {token}; sudo chmod 0640 {token}")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a read-only bind mount")
def test_a_database_on_a_read_only_file_system_says_so_instead_of_blaming_the_owner(tmp_path, pty_reader):
    data, mounted = tmp_path / "data", tmp_path / "mounted"
    data.mkdir()
    mounted.mkdir()
    Store(data / "omaovi.db").close()
    (tmp_path / "omaovi.toml").write_text(branch_config(pty_reader, database=str(mounted / "omaovi.db")))
    (tmp_path / "consortium.key").write_text("k" * 32 + "\n")
    subprocess.run(["mount", "--bind", str(data), str(mounted)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mounted)], check=True)
        check = by_name(doctor().run(tmp_path / "omaovi.toml"))["database"]
    finally:
        subprocess.run(["umount", str(mounted)], check=False)
    assert check.status == FAIL
    assert check.detail == f"{mounted / 'omaovi.db'}: its file system is mounted read-only: {doctor_module.STORAGE_FAILED}"
    assert check.hint.startswith(f"find the mount with 'findmnt -T {mounted}'") and "chown" not in check.hint
