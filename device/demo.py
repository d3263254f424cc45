"""``omaovi demo``: the real device loop on simulated pins, driven from the terminal.

Everything below the console is the production code path (config file, store,
policy, doors on gpiozero); only the pins are gpiozero's mock pins and the card
reader is the keyboard. The demo card numbers are seeded fresh at every start so
they behave as the banner promises whatever the day and time.
"""

from __future__ import annotations

import logging
import secrets
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TextIO

from device import config as config_mod
from device import messages
from device.controller import Controller, TapResult
from device.events import parse_utc
from device.policy import Patron, Reservation
from device.schedule import Period, segment_text
from device.store import Store

DEMO_CONFIG = """\
# omaovi demo branch: simulated pins, the keyboard as the card reader.
branch = "demo"
timezone = "Europe/Helsinki"
database = "omaovi.db"
consortium_key_file = "consortium.key"

[web]
host = "127.0.0.1"
secret_key_file = "web-secret.key"
# The demo's browser comes over plain HTTP on this machine, with no HTTPS proxy.
secure_cookies = false

[policy]
staffed_entrance = "card"
booth_early_minutes = 10
max_offline_age = "72h"

[[doors]]
id = "entrance"
name = "Main entrance"
kind = "entrance"
lock_pin = 17
unlock_seconds = 5
held_open_seconds = 30
contact_pin = 27
exit_button_pin = 22
led_pin = 23
buzzer_pin = 24

[[doors]]
id = "booth"
name = "Work booth"
kind = "booth"
resource = "smartblock-1"
lock_pin = 5
unlock_seconds = 5
contact_pin = 6
led_pin = 13
"""

#: card number -> (what it shows, patron fields; None = a staff card kept locally)
DEMO_CARDS: dict[str, tuple[str, dict | None]] = {
    "10000001": ("allowed patron: opens the entrance in self-service hours", {}),
    "10000002": ("blocked patron (unpaid fines)", {"blocked_reason": "fines"}),
    "10000003": ("underage patron", {"underage": True}),
    "10000004": ("patron who has not accepted the self-service terms", {"self_service": False}),
    "10000005": ("expired card", {"expired": True}),
    "10000006": ("booth reservation holder: type 'booth 10000006'", {}),
    "90000001": ("staff card: opens every door at any time", None),
}

HELP = """\
Type a card number and press Enter to tap it at the entrance.
  booth NUMBER     tap at the work booth
  open / close     the entrance door opens or closes (door contact)
  exit             press the exit button inside
  status           door states and today's hours
  events           the last ten events
  help             this text
  quit             stop the demo (Ctrl-D works too)"""


def prepare(directory: Path, fresh: bool = False, now: datetime | None = None) -> config_mod.Config:
    """Write the demo config and key if missing, and seed the database for ``now``."""
    directory.mkdir(parents=True, exist_ok=True)
    if fresh:
        for name in ("omaovi.db", "omaovi.db-wal", "omaovi.db-shm"):
            (directory / name).unlink(missing_ok=True)
    config_path = directory / "omaovi.toml"
    if fresh or not config_path.exists():
        config_path.write_text(DEMO_CONFIG, encoding="utf-8")
    key_path = directory / "consortium.key"
    if not key_path.exists():
        key_path.write_text(secrets.token_hex(32) + "\n", encoding="utf-8")
        key_path.chmod(0o600)
    cfg = config_mod.load(config_path)
    store = Store(cfg.database)
    try:
        seed(store, cfg, now or datetime.now(timezone.utc))
    finally:
        store.close()
    return cfg


def seed(store: Store, cfg: config_mod.Config, now: datetime) -> None:
    from device.cards import card_key, load_consortium_key

    key = load_consortium_key(cfg.consortium_key_file)
    today = now.astimezone(cfg.tz).date()
    if not store.schedule(cfg.tz).weekly:
        # A typical Finnish branch: self-service mornings and evenings, staff in the middle.
        weekday = (Period(6 * 60, 12 * 60, "self_service"), Period(12 * 60, 18 * 60, "staffed"), Period(18 * 60, 22 * 60, "self_service"))
        weekend = (Period(8 * 60, 20 * 60, "self_service"),)
        store.set_weekly({d: weekday for d in range(5)} | {5: weekend, 6: weekend})
    if store.schedule(cfg.tz).mode_at(now) != "self_service":
        # So that the allowed card opens the door whenever the demo is tried.
        store.set_exceptions({today: (Period(0, 1440, "self_service"),)}, note="Demo: self-service all day")

    patrons = []
    for number, (_, fields) in DEMO_CARDS.items():
        if fields is None:
            store.add_staff_card(card_key(key, number), "demo staff card", "demo")
            continue
        patrons.append(
            Patron(
                card_key=card_key(key, number),
                self_service=fields.get("self_service", True),
                blocked_reason=fields.get("blocked_reason"),
                valid_until=today - timedelta(days=1) if fields.get("expired") else today + timedelta(days=365),
                age_ok_from=today + timedelta(days=700) if fields.get("underage") else date(2000, 1, 1),
                fetched_at=now,
            )
        )
    store.put_patrons(patrons, source="demo")
    store.put_reservations([
        Reservation(
            id="demo-booth", resource="smartblock-1", card_key=card_key(key, "10000006"),
            begin=now - timedelta(minutes=30), end=now + timedelta(minutes=90),
        )
    ])


DEMO_USER = "demo"


def demo_login(store: Store) -> str:
    """A fresh password for the demo's admin user at every start: the demo has no default password either."""
    from admin_web import accounts

    password = accounts.new_password() + "-demo"
    if accounts.get_user(store, DEMO_USER) is None:
        accounts.add_user(store, DEMO_USER, password, "admin")
    else:
        accounts.set_password(store, DEMO_USER, password)
    return password


def start_web(cfg: config_mod.Config, port: int, out: TextIO):
    """The staff page on 127.0.0.1 in a thread, or None (said on ``out``) when the port is taken."""
    from admin_web.serve import make_server

    try:
        server = make_server(cfg, host="127.0.0.1", port=port)
    except OSError as exc:
        print(f"The staff page could not start on port {port} ({exc.strerror}); try --web-port.", file=out)
        return None
    threading.Thread(target=server.run, name="demo-web", daemon=True).start()
    return server


def run_demo(
    directory: Path, fresh: bool = False, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout, web_port: int = 8080
) -> int:
    from gpiozero.pins.mock import MockFactory

    cfg = prepare(directory, fresh)
    log_file = directory / "demo.log"
    _log_to(log_file)
    factory = MockFactory()
    store = Store(cfg.database, durable=True)
    password = demo_login(store)
    server = start_web(cfg, web_port, out)

    def show(result: TapResult) -> None:
        d = result.decision
        verdict = "GRANTED" if d.granted else "DENIED "
        extra = f" (door unlocked for {result.door.unlock_seconds:g} s)" if d.granted else ""
        begin = d.reservation.begin.astimezone(cfg.tz) if d.reservation is not None else None
        text = messages.tap_message(d.reason, begin)["en"]  # what the door's display would say
        print(f"  {result.door.id:<9} {verdict}  {d.reason.value:<19} mode={d.mode:<13} {text}{extra}", file=out, flush=True)

    controller = Controller(cfg, store, pin_factory=factory, on_tap=show, start_readers=False)
    stop = threading.Event()
    loop = threading.Thread(target=controller.run, args=(stop,), name="device-loop", daemon=True)
    loop.start()
    for door in cfg.doors:
        if door.contact_pin is not None:
            factory.pin(door.contact_pin).drive_low()  # every door starts closed
    controller.call(lambda: None)  # the loop has seen them close
    try:
        _banner(cfg, controller, out)
        if server is not None:
            print(f"Staff page: http://127.0.0.1:{server.effective_port}/  (user {DEMO_USER}, password {password})\n",
                  file=out, flush=True)
        _console(cfg, controller, factory, stdin, out)
    finally:
        if server is not None:
            server.close()
        stop.set()
        loop.join(timeout=2)
        controller.close()
        store.close()
    return 0


def _log_to(path: Path) -> None:
    """The device logs every tap; in the demo that goes to a file, not over the prompt."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _banner(cfg, controller: Controller, out: TextIO) -> None:
    print(f"omaovi demo — branch '{cfg.branch}', simulated pins, database {cfg.database}", file=out)
    print(f"The device's log goes to {cfg.database.parent / 'demo.log'}", file=out)
    today = datetime.now(cfg.tz).date()
    if today in controller.schedule.exceptions:
        print("Today's weekly hours were replaced by a demo exception so the self-service cards work now.", file=out)
    _print_status(cfg, controller, out)
    print("\nDemo cards:", file=out)
    for number, (description, _) in DEMO_CARDS.items():
        print(f"  {number}  {description}", file=out)
    print("  any other number: an unknown card\n", file=out)
    print(HELP + "\n", file=out, flush=True)


def _print_status(cfg, controller: Controller, out: TextIO) -> None:
    now = datetime.now(timezone.utc)
    schedule = controller.schedule
    local = now.astimezone(cfg.tz)
    change = schedule.next_change(now)
    upcoming = f", then {change[1]} from {change[0].astimezone(cfg.tz):%a %H:%M}" if change else ""
    print(f"Now {local:%a %Y-%m-%d %H:%M %Z}: {schedule.mode_at(now)}{upcoming}", file=out)
    today = ", ".join(f"{segment_text(s, e)} {m}" for s, e, m in schedule.day_timeline(local.date()))
    print(f"Today: {today}", file=out)
    for door_id, door in controller.doors.items():
        print(f"Door {door_id}: {door.state}{' (lockdown)' if door.lockdown else ''}", file=out, flush=True)


def _console(cfg, controller: Controller, factory, stdin: TextIO, out: TextIO) -> None:
    entrance = next(d for d in cfg.doors if d.kind == "entrance")
    while True:
        print("card> ", end="", file=out, flush=True)
        line = stdin.readline()
        if not line:
            print(file=out)
            return
        words = line.split()
        if not words:
            continue
        command = words[0].lower()
        if command in ("quit", "q"):
            return
        if command == "help":
            print(HELP, file=out)
        elif command == "status":
            controller.call(lambda: _print_status(cfg, controller, out))
        elif command == "events":
            for row in reversed(controller.call(lambda: controller.store.events(limit=10))):
                local = parse_utc(row["ts"]).astimezone(cfg.tz)
                print(f"  {local:%H:%M:%S} {row['door']:<9} {row['type']:<17} {row['reason'] or ''}", file=out)
        elif command in ("open", "close"):
            pin = factory.pin(entrance.contact_pin)
            pin.drive_high() if command == "open" else pin.drive_low()
            controller.call(lambda: None)  # let the loop handle the contact first
            print(f"  entrance door is now {controller.doors[entrance.id].state}", file=out)
        elif command == "exit":
            pin = factory.pin(entrance.exit_button_pin)
            pin.drive_low()
            pin.drive_high()
            controller.call(lambda: None)
            print(f"  exit button pressed; entrance is {controller.doors[entrance.id].state}", file=out)
        elif command == "booth" and len(words) != 2:
            print("  usage: booth NUMBER", file=out)
        elif command == "booth":
            booth = next(d for d in cfg.doors if d.kind == "booth")
            controller.call(lambda: controller.tap(booth.id, words[1]))
        elif len(words) == 1:
            if controller.call(lambda: controller.tap(entrance.id, words[0])) is None:
                print("  not a card number (A-Z and 0-9, at most 64); type 'help'", file=out)
        else:
            print("  unknown command; type 'help'", file=out)
        out.flush()
