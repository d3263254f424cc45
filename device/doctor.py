"""``omaovi doctor``: check an installed branch, one line per check, each failure with its fix.

Run it after installing, after changing the wiring and whenever a door misbehaves.
It checks what the device needs to start and to decide correctly: the config, the
database, the consortium key, each reader and serial PIN keypad, the GPIO pins and the clock, and, when
the config has them, that the central service accepts the branch's token and that
the library system accepts the SIP2 login. It changes
nothing, with one exception asked for by name: ``--pulse DOOR`` clicks that door's
relay once, to test the lock wiring. ``--sip2-card NUMBER`` looks one test card
up in the library system and prints how the configured profile reads each field
of the reply, so that a wrong profile is caught at install time.

Run it as the service user (``sudo -u omaovi omaovi doctor``) so that permission
problems show up as they would for the device. When run as root it still checks
that the omaovi user can write the database, because a database that root
created is the classic reason the device cannot start.

The reader, keypad and GPIO checks need the hardware to themselves: stop the device
first (``sudo systemctl stop omaovi-device``), or they report the devices as busy.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import sqlite3
import stat
import subprocess
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote
from pathlib import Path
from typing import Callable, TextIO

from device import config as config_mod
from device.cards import MIN_KEY_BYTES, load_consortium_key
from device.config import CentralConfig, Config, ConfigError, DoorConfig, Sip2Settings
from device.pins import MIN_PEPPER_BYTES, load_pepper
from device.store import MIGRATIONS

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "--"
SERVICE_USER = "omaovi"
#: An address no SIP2 server has (TEST-NET-1): the device unit must refuse it.
_NOT_SIP2 = "192.0.2.1"
#: One group per secret, given only to the unit that needs it (systemd/install.sh).
CENTRAL_GROUP, SIP2_GROUP = "omaovi-central", "omaovi-sip2"
#: What a database the device cannot write means at the door.
STORAGE_FAILED = "the device runs in the storage-failed mode (only staff cards open, events wait in memory)"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    hint: str = ""

    def lines(self) -> list[str]:
        lines = [f"{self.status:<4}  {self.name}: {self.detail}"]
        if self.hint and self.status in (FAIL, WARN):
            lines.append(f"      fix: {self.hint}")
        return lines


def _run_timedatectl() -> str:
    result = subprocess.run(
        ["timedatectl", "show", "--property", "NTPSynchronized", "--value"],
        capture_output=True, text=True, timeout=10, check=True,
    )
    return result.stdout.strip()


class Doctor:
    """The checks, with the hardware access that tests replace.

    pin_factory: gpiozero's pin factory (None: gpiozero's default, the real pins).
    build_reader: makes a reader from its ReaderConfig (device.readers.build_reader).
    ntp_synchronized: returns timedatectl's "yes"/"no"; raises when it cannot tell.
    service_user: whose write access to the database is checked when running as root.
    session: the requests.Session that asks the central service (None: a new one),
        so tests can keep proxies from the environment out of the way.
    unit_dir: where the systemd units are installed.
    """

    def __init__(
        self,
        *,
        pin_factory=None,
        build_reader: Callable | None = None,
        ntp_synchronized: Callable[[], str] = _run_timedatectl,
        service_user: str = SERVICE_USER,
        session=None,
        unit_dir: Path = Path("/etc/systemd/system"),
    ):
        self.pin_factory = pin_factory
        if build_reader is None:
            from device.readers import build_reader
        self.build_reader = build_reader
        self.ntp_synchronized = ntp_synchronized
        self.service_user = service_user
        self.session = session
        self.unit_dir = unit_dir

    def run(self, config_path: str | Path) -> list[Check]:
        try:
            cfg, sections = config_mod.load_sections(config_path)
        except ConfigError as exc:
            problems = "; ".join(str(p) for p in exc.problems)
            return [Check("config", FAIL, f"{exc.path}: {problems}", f"omaovi check-config {exc.path}, fix each line, run doctor again")]
        checks = [Check("config", OK, f"{cfg.path}: branch {cfg.branch}, {len(cfg.doors)} door(s)")]
        checks.append(self.database(cfg))
        checks.append(self.consortium_key(cfg))
        if cfg.pin is not None:
            checks.append(self.pin_pepper(cfg))
        for door in cfg.doors:
            checks.append(self.reader(door))
            if door.keypad is not None and door.keypad.type == "serial":
                checks.append(self.serial_keypad(door))
        for door in cfg.doors:
            checks.append(self.pins(door))
        if cfg.building.lights_pin is not None or cfg.building.alarm_pin is not None:
            checks.append(self.building_pins(cfg))
        checks.append(self.clock())
        checks.append(self.central(cfg, sections.central))
        checks.append(self.sip2(sections.sip2))
        if sections.sip2 is not None:
            checks.append(self.sip2_unit(sections.sip2))
            checks.append(self.sip2_at_the_door(cfg))
        checks.append(self.secrets(sections))
        return checks

    def secrets(self, sections: config_mod.Sections) -> Check:
        """The central token and the SIP2 password must be out of the staff page's reach.

        The page runs as the same user as sync and the device; what keeps those
        secrets from it is that each file's group is one only its own unit has. A
        file readable by everyone, or by the service user's own group, undoes that.
        """
        name = "secret files"
        files = [(sections.central.token_file, CENTRAL_GROUP)] if sections.central else []
        files += [(sections.sip2.password_file, SIP2_GROUP)] if sections.sip2 else []
        files = [(path, group) for path, group in files if path.exists()]
        if not files:
            return Check(name, SKIP, "no central token or SIP2 password file")
        try:
            shared_gid = pwd.getpwnam(self.service_user).pw_gid
        except KeyError:
            shared_gid = None
        for path, group in files:
            st = path.stat()
            fix = f"sudo chown root:{group} {path}; sudo chmod 0640 {path} (systemd/install.sh does this for /etc/omaovi)"
            if st.st_mode & stat.S_IROTH:
                return Check(name, FAIL, f"{path} is readable by every user (mode {stat.filemode(st.st_mode)})", fix)
            if st.st_mode & stat.S_IRGRP and st.st_gid == shared_gid:
                return Check(
                    name, FAIL, f"{path} is readable by the group of the {self.service_user} user, so by the staff page too",
                    fix,
                )
        return Check(name, OK, ", ".join(str(path) for path, _ in files) + " out of the staff page's reach")

    # -- the central service ------------------------------------------------------------
    def central(self, cfg: Config, central: CentralConfig | None) -> Check:
        """Ask the central service for today's hours once, as ``omaovi sync`` would.

        One request and no retries: the doctor answers now whether the network, the
        address and the token work, rather than waiting out sync's back-off. The
        hours are the smallest answer every branch's token may ask for. The token is
        never printed: doctor output gets pasted into tickets.
        """
        import requests

        from sync.central import USER_AGENT, SyncError, read_token

        name = "central service"
        if central is None:
            return Check(name, SKIP, "not configured (no [central] section)")
        try:
            token = read_token(central.token_file)
        except SyncError as exc:
            return Check(
                name, FAIL, str(exc),
                f"put this branch's token from the central service, on one line, in central.token_file "
                f"({central.token_file}): sudo install -m 0640 -o root -g {CENTRAL_GROUP} THE-TOKEN-FILE {central.token_file}"
                f" (only omaovi-sync has that group; run the doctor as root to read it: sudo omaovi doctor)",
            )
        today = datetime.now(cfg.tz).date().isoformat()
        url = f"{central.base_url}/v1/branches/{quote(cfg.branch)}/hours"
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": USER_AGENT}
        session = self.session or requests.Session()
        try:
            response = session.get(
                url, params={"from": today, "to": today}, headers=headers,
                timeout=central.timeout, allow_redirects=False,
            )
            response.close()
        except requests.RequestException as exc:
            return Check(
                name, FAIL, f"{central.base_url} unreachable ({exc.__class__.__name__})",
                "check the network (ping, DNS, firewall, proxy) and central.base_url in the config",
            )
        finally:
            if self.session is None:
                session.close()
        status = response.status_code
        if 200 <= status < 300:
            return Check(name, OK, f"{central.base_url} accepted the token for branch {cfg.branch} (HTTP {status})")
        if status in (401, 403):
            return Check(
                name, FAIL, f"{central.base_url}: token refused (HTTP {status})",
                f"ask the central service for branch {cfg.branch}'s token and put it in central.token_file ({central.token_file})",
            )
        return Check(
            name, FAIL, f"{central.base_url} answered HTTP {status} to GET .../v1/branches/{cfg.branch}/hours",
            "check central.base_url (a 3xx or 404 usually means a wrong path or http:// for https://); "
            "a 5xx is the central service's own problem: tell its operators",
        )

    # -- SIP2 ---------------------------------------------------------------------------
    def sip2(self, settings: Sip2Settings | None) -> Check:
        """Log in to the library system once, as the device does before its first tap.

        The checker is built as the device builds it, so the password file and TLS
        settings are read the same way, but only its client logs in: no breaker, and
        no patron request, so no patron data is fetched. Neither the password nor
        any reply is printed.
        """
        from device.controller import sip2_checker
        from sync.sip2 import Sip2Error, Sip2LoginRefused

        name = "SIP2"
        if settings is None:
            return Check(name, SKIP, "not configured (no [sip2] section)")
        where = f"{settings.host}:{settings.port}"
        try:
            client = sip2_checker(settings).client
        except (OSError, ValueError) as exc:
            if not str(exc).startswith("sip2.password_file"):  # the TLS context: tls_ca_file
                return Check(name, FAIL, f"cannot set up TLS for {where}: {exc}", _sip2_network_hint(settings))
            return Check(
                name, FAIL, str(exc),
                f"put the SIP2 password on one line in sip2.password_file: "
                f"sudo install -m 0640 -o root -g {SIP2_GROUP} THE-PASSWORD-FILE {settings.password_file}"
                f" (only omaovi-device has that group; run the doctor as root to read it: sudo omaovi doctor)",
            )
        try:
            client.login()
        except Sip2LoginRefused:
            return Check(
                name, FAIL, f"login refused by {where}",
                "check sip2.username and the password in sip2.password_file against the library system's "
                "SIP2 account for this branch (and sip2.institution, which the first patron check sends)",
            )
        except Sip2Error as exc:
            return Check(name, FAIL, _naming(where, exc), _sip2_network_hint(settings))
        return Check(name, OK, f"login accepted by {where}")

    def sip2_unit(self, settings: Sip2Settings) -> Check:
        """Whether the installed device unit lets the device reach the SIP2 server, and only it.

        The login above runs outside the unit's sandbox; this reads the unit and
        its drop-ins as systemd merges them (``device.unit_network``).
        """
        from device.unit_network import installed_unit_texts, may_connect, resolve

        name = "SIP2 through the device unit"
        texts = installed_unit_texts(self.unit_dir)
        if not texts:
            return Check(name, SKIP, f"omaovi-device.service is not installed in {self.unit_dir}")
        try:
            addresses = resolve(settings.host)
        except OSError as exc:
            return Check(name, FAIL, f"{settings.host} cannot be resolved: {exc}", _sip2_network_hint(settings))
        blocked = [a for a in addresses if not may_connect(texts, a)]
        if blocked:
            return Check(
                name, FAIL,
                f"the device unit blocks {settings.host} ({', '.join(blocked)}): every check fails at the door "
                "and it decides from the cache",
                "run sudo systemd/install.sh again (it writes omaovi-device.service.d/sip2.conf from [sip2]), then "
                "sudo systemctl daemon-reload && sudo systemctl restart omaovi-device",
            )
        if may_connect(texts, _NOT_SIP2):
            return Check(name, WARN, f"the device unit lets {settings.host} through, and other addresses too",
                         "keep IPAddressDeny=any in omaovi-device.service; allow only the SIP2 server")
        return Check(name, OK, f"the device unit lets {settings.host} ({', '.join(addresses)}) through, and nothing else")

    def sip2_at_the_door(self, cfg: Config) -> Check:
        """What the running device itself last met with the library system (its own report)."""
        name = "SIP2 at the door"
        try:
            conn = sqlite3.connect(f"file:{cfg.database}?mode=ro", uri=True, timeout=2)
            try:
                row = conn.execute("SELECT value, updated_at FROM device_status WHERE key = 'sip2'").fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            row = None
        if row is None:
            return Check(name, SKIP, "the device has not reported a SIP2 check yet")
        state = json.loads(row[0])
        success, error_at = state.get("last_success"), state.get("last_error_at")
        if error_at and (success is None or error_at > success):
            return Check(
                name, FAIL,
                f"the device's last check failed at {error_at}: {state.get('last_error')} (breaker {state.get('breaker')}); "
                f"last success {success or 'never'}",
                "see the check above; if the login works here but not at the door, the device unit blocks the server",
            )
        if success is None:
            return Check(name, SKIP, "the device has made no SIP2 check yet")
        return Check(name, OK, f"the device's last check succeeded at {success}")

    # -- the database -----------------------------------------------------------
    def database(self, cfg: Config) -> Check:
        path = cfg.database
        directory = path.parent
        if not directory.is_dir():
            what = "is not a directory" if directory.exists() else "does not exist"
            return Check(
                "database", FAIL, f"{path}: its directory {directory} {what}",
                f"sudo install -d -o {self.service_user} -g {self.service_user} -m 0750 {directory} "
                "(systemd/install.sh does this), or change database in the config",
            )
        user = self._other_user()
        if user is not None:
            # Root can write anything; what matters is whether the device can.
            for target in (directory, path):
                if target.exists() and not _writable_by(target, user):
                    return Check(
                        "database", FAIL,
                        f"{target} is not writable by the {user.pw_name} user (owner {_owner(target)}): {STORAGE_FAILED}",
                        f"sudo chown {user.pw_name}:{user.pw_name} {target}",
                    )
        strangers = self._not_the_service_users(directory, path)
        if strangers:
            owner = self.service_user
            return Check(
                "database", FAIL,
                "; ".join(f"{target} belongs to {_owner(target)}, not to the {owner} user" for target in strangers)
                + f": {STORAGE_FAILED}",
                f"sudo chown {owner}:{owner} {' '.join(str(t) for t in strangers)} (systemd/install.sh does this too)",
            )
        if not path.exists():
            return Check("database", OK, f"{path} not created yet; the device creates it on its first start")
        try:
            conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=2)
        except sqlite3.Error as exc:
            return Check("database", FAIL, f"{path}: cannot open it ({exc})", f"check the owner and mode: ls -l {directory}")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            # Take the write lock and let it go: proves the file, its journal and
            # its directory are writable, without changing anything.
            conn.execute("BEGIN IMMEDIATE")
            conn.rollback()
        except sqlite3.Error as exc:
            hint = f"sudo chown {self.service_user}:{self.service_user} {path} {directory}"
            detail = f"{path}: cannot write it ({exc})"
            if "locked" in str(exc) or "busy" in str(exc):
                hint = "another process holds a long write transaction; if it persists, restart omaovi-device"
            elif "not a database" in str(exc):
                hint = f"the file is not an omaovi database: move {path} away and restore a backup, or let the device start a new one"
            elif os.statvfs(directory).f_flag & os.ST_RDONLY:
                detail = f"{path}: its file system is mounted read-only: {STORAGE_FAILED}"
                hint = (f"find the mount with 'findmnt -T {directory}' and make it writable (sudo mount -o remount,rw MOUNTPOINT); "
                        "a file system the kernel made read-only after errors needs fsck first: see dmesg")
            else:
                detail += f": {STORAGE_FAILED}"
            return Check("database", FAIL, detail, hint)
        finally:
            conn.close()
        latest = len(MIGRATIONS)
        if version > latest:
            return Check(
                "database", FAIL, f"{path} is at schema version {version}, newer than this omaovi ({latest})",
                "install the omaovi version that wrote it (git pull; sudo systemd/install.sh)",
            )
        if version < latest:
            return Check(
                "database", WARN, f"{path} is at schema version {version} of {latest}",
                "restart the device (sudo systemctl restart omaovi-device); it applies the migrations on start",
            )
        return Check("database", OK, f"{path} writable, schema version {version} (current)")

    def _not_the_service_users(self, directory: Path, path: Path) -> list[Path]:
        """The database and its -wal and -shm files owned by someone else than the service
        user (or, where it does not exist, the directory's owner). ``sudo omaovi ...`` or
        ``sudo sqlite3`` leaves them owned by root; even one root-owned -shm keeps the device
        from writing, and a check run as root would not notice it by trying."""
        try:
            uid = pwd.getpwnam(self.service_user).pw_uid
        except KeyError:
            uid = directory.stat().st_uid
        files = (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
        return [f for f in files if f.exists() and f.stat().st_uid != uid]

    def _other_user(self) -> pwd.struct_passwd | None:
        """The service user, when it is not who runs the doctor and exists here."""
        try:
            user = pwd.getpwnam(self.service_user)
        except KeyError:
            return None
        return None if user.pw_uid == os.geteuid() else user

    # -- the key ------------------------------------------------------------------
    def consortium_key(self, cfg: Config) -> Check:
        return self._secret_file(
            "consortium key", cfg.consortium_key_file, load_consortium_key, MIN_KEY_BYTES, "the consortium's key",
        )

    def pin_pepper(self, cfg: Config) -> Check:
        return self._secret_file("PIN pepper", cfg.pin.pepper_file, load_pepper, MIN_PEPPER_BYTES, "the branch's PIN pepper")

    def _secret_file(self, name: str, path: Path, load: Callable[[Path], bytes], minimum: int, what: str) -> Check:
        """A key file only root and the service user may read, holding a real key."""
        place = f"sudo install -m 0640 -o root -g {self.service_user} THE-KEY-FILE {path}"
        if not path.exists():
            return Check(name, FAIL, f"{path} does not exist", f"copy {what} there: {place}")
        try:
            secret = load(path)
        except PermissionError:
            return Check(name, FAIL, f"{path} is not readable by this user", f"sudo chgrp {self.service_user} {path}; sudo chmod 0640 {path}")
        except ValueError as exc:
            return Check(name, FAIL, str(exc), f"use {what}, not a placeholder: {place}")
        mode = path.stat().st_mode
        if mode & stat.S_IROTH:
            return Check(name, FAIL, f"{path} is readable by every user (mode {stat.filemode(mode)})", f"sudo chmod 0640 {path}")
        return Check(name, OK, f"{path}: {len(secret)} bytes (at least {minimum})")

    # -- readers --------------------------------------------------------------------
    def reader(self, door: DoorConfig) -> Check:
        from device.readers.base import ReaderError

        name = f"reader {door.id}"
        cfg = door.reader
        if cfg is None:
            return Check(name, OK, "no reader (opens by exit button and the staff page only)")
        if cfg.type == "stdin":
            return Check(name, WARN, "stdin: typed card numbers, for testing only", 'set [doors.reader] type to the reader fitted to the door')
        reader = self.build_reader(cfg)
        try:
            reader.open()
            detail = f"{reader.name} opens"
            if cfg.type == "mfrc522":
                detail = f"{reader.name} answers, chip version 0x{reader.version():02X}"
        except (ReaderError, OSError) as exc:
            return Check(name, FAIL, str(exc), _reader_hint(cfg.type))
        finally:
            reader.close()
        return Check(name, OK, detail)

    def serial_keypad(self, door: DoorConfig) -> Check:
        """Open a serial keypad's port as the device would: without it the door opens by card alone."""
        import serial

        name = f"keypad {door.id}"
        device = door.keypad.device
        try:
            serial.serial_for_url(device, baudrate=door.keypad.baudrate, timeout=0.2, exclusive=True).close()
        except (serial.SerialException, OSError, ValueError) as exc:
            return Check(
                name, FAIL, f"cannot open {device}: {exc}; the door opens by card alone, without a PIN, until it can",
                _reader_hint("serial") + "; the device asks for PINs again by itself once the port opens",
            )
        return Check(name, OK, f"serial {device} opens")

    # -- GPIO -------------------------------------------------------------------------
    def pins(self, door: DoorConfig) -> Check:
        """Claim the door's pins as the device does: the lock relay stays released (locked)."""
        from device.building import PeopleCounter
        from device.door import Door
        from device.keypad import MatrixPins

        def claim(pin_factory, claimed: list) -> None:
            claimed.append(Door(door, emit=lambda *_: None, post=lambda _: None, pin_factory=pin_factory))
            if door.keypad is not None and door.keypad.type == "matrix":
                claimed.append(MatrixPins(door.keypad, pin_factory=pin_factory))
            if door.counter_in_pin is not None:
                claimed.append(PeopleCounter(door.counter_in_pin, door.counter_out_pin, None, None, pin_factory=pin_factory))

        return self._claim(f"pins {door.id}", _pins(door), claim)

    def building_pins(self, cfg: Config) -> Check:
        """The lights and alarm relays, claimed and left released."""
        from device.building import BuildingOutputs

        used = [(key, getattr(cfg.building, key)) for key in ("lights_pin", "alarm_pin") if getattr(cfg.building, key) is not None]
        return self._claim(
            "pins building", used,
            lambda pin_factory, claimed: claimed.append(BuildingOutputs(cfg.building, pin_factory=pin_factory)),
        )

    def _claim(self, name: str, pins: list[tuple[str, int]], claim: Callable[[object, list], None]) -> Check:
        """``claim`` adds each part to the list as it claims it, so a failure releases those before it."""
        from gpiozero import BadPinFactory, GPIOZeroError

        used = ", ".join(f"{key} GPIO{pin}" for key, pin in pins)
        claimed: list = []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # gpiozero's fallback warnings; the result says it all
                claim(self.pin_factory, claimed)
        except BadPinFactory:
            return Check(
                name, FAIL, f"cannot claim {used}: no GPIO pin factory could be loaded",
                "this is not a Raspberry Pi, or python3-lgpio is missing (sudo apt install python3-lgpio; "
                "see docs/install.md); to try a config off a Pi, run with GPIOZERO_PIN_FACTORY=mock",
            )
        except (GPIOZeroError, OSError, RuntimeError) as exc:
            return Check(
                name, FAIL, f"cannot claim {used}: {exc.__class__.__name__}: {exc}",
                "stop the device first (sudo systemctl stop omaovi-device); otherwise another program holds "
                "the pin, or the omaovi user is not in the gpio group",
            )
        finally:
            for part in claimed:
                part.close()
        return Check(name, OK, f"free: {used}")

    # -- the clock ----------------------------------------------------------------------
    def clock(self) -> Check:
        hint = "enable time sync: sudo timedatectl set-ntp true; opening hours and booth reservations follow the clock"
        try:
            answer = self.ntp_synchronized()
        except (OSError, subprocess.SubprocessError) as exc:
            return Check("clock", WARN, f"cannot tell whether the clock is synchronised ({exc.__class__.__name__}: {exc})", hint)
        if answer == "yes":
            return Check("clock", OK, "synchronised (NTP)")
        return Check("clock", FAIL, f"not synchronised (timedatectl NTPSynchronized={answer or 'empty'})", hint)


def _pins(door: DoorConfig) -> list[tuple[str, int]]:
    keys = ("lock_pin", "contact_pin", "exit_button_pin", "led_pin", "buzzer_pin", "counter_in_pin", "counter_out_pin")
    pins = [(key, getattr(door, key)) for key in keys if getattr(door, key) is not None]
    if door.keypad is not None:
        pins += [("keypad row", pin) for pin in door.keypad.row_pins]
        pins += [("keypad column", pin) for pin in door.keypad.column_pins]
    return pins


def _reader_hint(kind: str) -> str:
    return {
        "serial": "check the cable and the path (ls -l /dev/serial/by-id/) and that omaovi is in the dialout group",
        "evdev": "check the cable and the path (ls -l /dev/input/by-id/) and that omaovi is in the input group",
        "mfrc522": "enable SPI (sudo raspi-config nonint do_spi 0), check the wiring in docs/install.md, "
                   "and that omaovi is in the spi and gpio groups",
    }.get(kind, "check the reader settings in the config")


def _naming(where: str, exc: Exception) -> str:
    """The SIP2 client's message, led by host:port unless it already names them."""
    return str(exc) if where in str(exc) else f"{where}: {exc}"


def _sip2_network_hint(settings: Sip2Settings) -> str:
    hint = (f"check the network and sip2.host/sip2.port ({settings.host}:{settings.port}); "
            "the library system must allow this Pi's address")
    if settings.tls:
        hint += "; with tls = true also sip2.tls_ca_file and that the server speaks TLS on this port"
    return hint


def _writable_by(path: Path, user: pwd.struct_passwd) -> bool:
    st = path.stat()
    if user.pw_uid == 0:
        return True
    groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & stat.S_IWUSR)
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)


def _owner(path: Path) -> str:
    st = path.stat()
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{user}:{group}, mode {stat.filemode(st.st_mode)}"


def sip2_card(config_path: str | Path, number: str, out: TextIO) -> int:
    """Look a test card up as the device would and print how the profile reads the reply.

    Prints the profile's reading of each field (allowed or not, and why), never a
    personal value and never the card number. The exit code is 1 when the lookup
    fails or the reply does not fit the profile.
    """
    from device.cards import CardNumberError, clean
    from device.controller import sip2_checker
    from sync.sip2 import PROFILES, Sip2Error

    def show(status: str, detail: str, hint: str = "") -> None:
        for line in Check("SIP2 test card", status, detail, hint).lines():
            print(line, file=out)

    try:
        _, sections = config_mod.load_sections(config_path)
    except ConfigError as exc:
        show(FAIL, f"{exc.path}: " + "; ".join(str(p) for p in exc.problems), f"omaovi check-config {exc.path}")
        return 1
    settings = sections.sip2
    if settings is None:
        show(FAIL, "not configured (no [sip2] section)", "add a [sip2] section (docs/sip2.md)")
        return 1
    try:
        number = clean(number)
    except CardNumberError:
        show(FAIL, "the --sip2-card value is not a card number (1-64 letters and digits)")
        return 1
    profile = PROFILES[settings.profile]
    print(f"      profile {profile.name}: {profile.system}", file=out)
    print(f"      card number sent {settings.card_number_form}", file=out)
    notes: list[str] = []
    try:
        checker = sip2_checker(settings)
    except (OSError, ValueError) as exc:
        show(FAIL, str(exc))
        return 1
    try:
        result = checker.client.patron_information(number, notes=notes)
    except Sip2Error as exc:
        for note in notes:
            print(f"      {note}", file=out)
        others = ", ".join(name for name in PROFILES if name != profile.name)
        show(FAIL, _naming(f"{settings.host}:{settings.port}", exc),
             f"if a field does not fit, the profile is wrong for this library system: try sip2.profile = {others} "
             "(docs/sip2.md#profiles); otherwise run omaovi doctor for the connection")
        return 1
    finally:
        checker.close()
    for note in notes:
        print(f"      {note}", file=out)
    if not result.known:
        show(WARN, "the library system has no such patron (BL N)",
             "use a card the library system knows; if it should know it, try another sip2.card_number_form")
    else:
        show(OK, "read by profile " + profile.name)
    return 0


def report(checks: list[Check], out: TextIO) -> int:
    """Print the checks; the exit code is 1 if any failed."""
    for check in checks:
        for line in check.lines():
            print(line, file=out)
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    print(f"{failed} failed, {warned} warning(s)." if failed or warned else "All checks passed.", file=out)
    return 1 if failed else 0


def pulse(config_path: str | Path, door_id: str, out: TextIO, *, pin_factory=None, sleep: Callable[[float], None] = time.sleep) -> int:
    """Unlock one door for its unlock_seconds, to test the relay and the lock, and log it as a command."""
    from gpiozero import GPIOZeroError, OutputDevice

    from device import events
    from device.store import Store

    cfg = config_mod.load(config_path)
    try:
        door = cfg.door(door_id)
    except KeyError:
        print(f"no door {door_id!r}; the doors are: {', '.join(d.id for d in cfg.doors)}", file=out)
        return 1
    try:
        relay = OutputDevice(door.lock_pin, active_high=door.lock_active_high, initial_value=False, pin_factory=pin_factory)
    except (GPIOZeroError, OSError, RuntimeError) as exc:
        print(f"cannot claim GPIO{door.lock_pin} ({exc}): stop the device first (sudo systemctl stop omaovi-device)", file=out)
        return 1
    # An unlock nobody recorded is what a door log must never have. Before the
    # device's first start there is no database, and creating one here (as root,
    # most likely) would leave a file the device cannot write, so it is not logged.
    if not cfg.database.exists():
        print(f"{cfg.database} does not exist yet (the device creates it); this pulse is not logged.", file=out)
    else:
        try:
            store = Store(cfg.database)
            store.record([events.Event(
                ts=datetime.now(timezone.utc), door=door.id, type=events.COMMAND, door_kind=door.kind,
                detail={"action": "pulse", "by": "omaovi doctor"},
            )])
            store.close()
        except (sqlite3.Error, OSError) as exc:
            relay.close()
            print(f"cannot log the unlock in {cfg.database} ({exc}); not pulsing. Run omaovi doctor.", file=out)
            return 1
    try:
        print(f"{door.id}: relay on GPIO{door.lock_pin} for {door.unlock_seconds:g} s", file=out)
        relay.on()
        sleep(door.unlock_seconds)
    finally:
        relay.off()
        relay.close()
    print(f"{door.id}: relay off. Did the lock click and the door open? If it opened when the relay "
          "went off instead, lock_active_high is the wrong way round.", file=out)
    return 0
