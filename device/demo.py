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
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TextIO

from device import config as config_mod
from device import messages
from device.cards import CardNumberError, normalize
from device.controller import Controller, TapResult
from device.events import parse_utc
from device.policy import Patron
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
counter_in_pin = 25
counter_out_pin = 26

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

#: The card that holds the seeded booth booking.
BOOTH_HOLDER = "10000006"
#: card number -> (what it shows, patron fields; None = a staff card kept locally)
DEMO_CARDS: dict[str, tuple[str, dict | None]] = {
    "10000001": ("allowed patron: opens the entrance in self-service hours", {}),
    "10000002": ("blocked patron (unpaid fines)", {"blocked_reason": "fines"}),
    "10000003": ("underage patron", {"underage": True}),
    "10000004": ("patron who has not accepted the self-service terms", {"self_service": False}),
    "10000005": ("expired card", {"expired": True}),
    BOOTH_HOLDER: ("booth reservation holder (booked at the central service): type 'booth 10000006'", {}),
    "90000001": ("staff card: opens every door at any time", None),
}


@dataclass(frozen=True)
class SimulatedInput:
    """A console command that moves one input pin of a door, as the hardware would."""

    command: str
    #: The DoorConfig field naming the pin; a door without it has no such input.
    pin_field: str
    #: "open"/"close": the pin stays there (a door contact); "press": down and up again (a button, a counter pulse).
    action: str
    help: str
    #: What the console answers, from the door's id, its state and the people inside.
    reply: str


#: Every input the demo simulates. A new input (the help button, when doors get one)
#: is one more row: its command, help line and door list follow from it.
SIMULATED_INPUTS = (
    SimulatedInput("open", "contact_pin", "open", "the door contact: the door opens", "{door} door is now {state}"),
    SimulatedInput("close", "contact_pin", "close", "the door contact: the door closes", "{door} door is now {state}"),
    SimulatedInput("exit", "exit_button_pin", "press", "press the exit button inside",
                   "exit button pressed; {door} is {state}"),
    SimulatedInput("in", "counter_in_pin", "press", "a person walks in past the people counter",
                   "people counter at {door}: one in; people inside (estimate): {inside}"),
    SimulatedInput("out", "counter_out_pin", "press", "a person walks out past the people counter",
                   "people counter at {door}: one out; people inside (estimate): {inside}"),
)

BOOTH_COMMAND = ("booth NUMBER", "tap a card at the work booth")
#: The console's commands for the central service, when it runs.
CENTRAL_COMMANDS = (
    ("book NUMBER [H]", "book the work booth at the central service for card NUMBER, from now for H hours (1-4, default 1)"),
    ("cancel REF", "cancel a booking by its reference"),
)
#: The console's commands besides tapping and the simulated inputs.
CONSOLE_COMMANDS = (
    ("status", "door states, people inside and today's hours"),
    ("events", "the last ten events"),
    ("help", "this text"),
    ("quit", "stop the demo (Ctrl-D works too)"),
)


def commands(cfg: config_mod.Config, central: bool = True) -> list[tuple[str, str]]:
    """Every console command as (usage, what it does), in the order the help lists them;
    an input no door of ``cfg`` has is left out, and so are the booking commands without a central service."""
    rows = [BOOTH_COMMAND, *(CENTRAL_COMMANDS if central else ())]
    for simulated in SIMULATED_INPUTS:
        doors = [d.id for d in cfg.doors if getattr(d, simulated.pin_field) is not None]
        if doors:
            rows.append((f"{simulated.command} [DOOR]",
                         f"{simulated.help}; DOOR: {' or '.join(doors)} ({doors[0]} if left out)"))
    return rows + list(CONSOLE_COMMANDS)


def help_text(cfg: config_mod.Config, central: bool = True) -> str:
    lines = ["Type a card number and press Enter to tap it at the entrance. Commands:"]
    return "\n".join(lines + [f"  {usage:<16} {what}" for usage, what in commands(cfg, central)])


def prepare(directory: Path, fresh: bool = False, now: datetime | None = None) -> config_mod.Config:
    """Write the demo config and key if missing, and seed the database for ``now``."""
    directory.mkdir(parents=True, exist_ok=True)
    if fresh:
        for name in ("omaovi.db", "central/central.db"):
            for suffix in ("", "-wal", "-shm"):
                (directory / f"{name}{suffix}").unlink(missing_ok=True)
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

    for number, (_, fields) in DEMO_CARDS.items():
        if fields is None:
            store.add_staff_card(card_key(key, number), "demo staff card", "demo")
    store.put_patrons(demo_patrons(key, today, now), source="demo")


def demo_patrons(key: bytes, today: date, now: datetime) -> list[Patron]:
    """The demo cards' permissions, the same for the branch's cache and for the central service."""
    from device.cards import card_key

    return [
        Patron(
            card_key=card_key(key, number),
            self_service=fields.get("self_service", True),
            blocked_reason=fields.get("blocked_reason"),
            valid_until=today - timedelta(days=1) if fields.get("expired") else today + timedelta(days=365),
            age_ok_from=today + timedelta(days=700) if fields.get("underage") else date(2000, 1, 1),
            fetched_at=now,
        )
        for number, (_, fields) in DEMO_CARDS.items()
        if fields is not None
    ]


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


def start_central(directory: Path, cfg: config_mod.Config, port: int, out: TextIO):
    """The central service and the branch's sync in threads, or None (said on ``out``) when the port is taken."""
    from device.cards import load_consortium_key
    from device.demo_central import DemoCentral

    try:
        central = DemoCentral(directory, cfg, port)
    except OSError as exc:
        print(f"The central service could not start on port {port} ({exc.strerror}); try --central-port.", file=out)
        return None
    now = datetime.now(timezone.utc)
    central.start(demo_patrons(load_consortium_key(cfg.consortium_key_file), now.astimezone(cfg.tz).date(), now), BOOTH_HOLDER, now)
    return central


def run_demo(
    directory: Path, fresh: bool = False, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout, web_port: int = 8080,
    central_port: int = 8090,
) -> int:
    from gpiozero.pins.mock import MockFactory

    cfg = prepare(directory, fresh)
    log_file = directory / "demo.log"
    _log_to(log_file)
    factory = MockFactory()
    store = Store(cfg.database, durable=True)
    password = demo_login(store)
    server = start_web(cfg, web_port, out)
    central = start_central(directory, cfg, central_port, out)

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
            # A mock input reads its pull-up, high, and a contact read high is an open
            # door: without this every door would stand open until `close`.
            factory.pin(door.contact_pin).drive_low()
    controller.call(lambda: None)  # the loop has seen them close
    try:
        _banner(cfg, controller, central is not None, out)
        if server is not None:
            print(f"Staff page: http://127.0.0.1:{server.effective_port}/  (user {DEMO_USER}, password {password})", file=out)
        if central is not None:
            print(f"Central service: {central.url}/ (the branch syncs with it; book the booth with 'book NUMBER')", file=out)
        print(file=out, flush=True)
        _console(cfg, controller, factory, central, stdin, out)
    finally:
        if central is not None:
            central.close()
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


def _banner(cfg, controller: Controller, central: bool, out: TextIO) -> None:
    print(f"omaovi demo — branch '{cfg.branch}', simulated pins, database {cfg.database}", file=out)
    print(f"The device's log goes to {cfg.database.parent / 'demo.log'}", file=out)
    today = datetime.now(cfg.tz).date()
    if today in controller.schedule.exceptions:
        print("Today's weekly hours were replaced by a demo exception so the self-service cards work now.", file=out)
    _print_status(cfg, controller, out)
    print("\nDemo cards:", file=out)
    for number, (description, _) in DEMO_CARDS.items():
        print(f"  {number}  {description}", file=out)
    print("  any other number: an unknown card (a word without a digit is taken as a mistyped command)\n", file=out)
    print(help_text(cfg, central) + "\n", file=out, flush=True)


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
        print(f"Door {door_id}: {door.state}{' (lockdown)' if door.lockdown else ''}", file=out)
    print(f"People inside (estimate): {controller.occupancy.count}", file=out, flush=True)


def _console(cfg, controller: Controller, factory, central, stdin: TextIO, out: TextIO) -> None:
    entrance = next(d for d in cfg.doors if d.kind == "entrance")
    inputs = {simulated.command: simulated for simulated in SIMULATED_INPUTS}
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
            print(help_text(cfg, central is not None), file=out)
        elif command in ("book", "cancel") and central is not None:
            _central_command(cfg, central, words, out)
        elif command == "status":
            controller.call(lambda: _print_status(cfg, controller, out))
        elif command == "events":
            for row in reversed(controller.call(lambda: controller.store.events(limit=10))):
                local = parse_utc(row["ts"]).astimezone(cfg.tz)
                print(f"  {local:%H:%M:%S} {row['door']:<9} {row['type']:<17} {row['reason'] or ''}", file=out)
        elif command in inputs:
            _simulate(cfg, controller, factory, inputs[command], words[1:], out)
        elif command == "booth" and len(words) != 2:
            print("  usage: booth NUMBER", file=out)
        elif command == "booth":
            booth = next(d for d in cfg.doors if d.kind == "booth")
            controller.call(lambda: controller.tap(booth.id, words[1]))
        elif len(words) == 1 and _is_card_number(words[0]):
            controller.call(lambda: controller.tap(entrance.id, words[0]))
        else:
            names = ", ".join(usage.split()[0] for usage, _ in commands(cfg, central is not None))
            print(f"  {line.strip()!r} is not a command or a card number. Commands: {names}; 'help' says more", file=out)
        out.flush()


def _central_command(cfg, central, words: list[str], out: TextIO) -> None:
    """``book NUMBER [H]`` and ``cancel REF``: at the central service, then synced to the branch at once."""
    from central.bookings import BookingError

    now = datetime.now(timezone.utc)
    try:
        if words[0].lower() == "cancel":
            if len(words) != 2:
                raise ValueError("usage: cancel REF")
            central.cancel(words[1], now)
            print(f"  cancelled {words[1].upper()}; the branch has synced: the booth no longer opens for it", file=out)
            return
        hours = float(words[2]) if len(words) == 3 else 1.0
        if len(words) not in (2, 3) or not _is_card_number(words[1]) or not 1 <= hours <= 4:
            raise ValueError("usage: book NUMBER [H], with H from 1 to 4 hours")
        reference, begin, end = central.book(words[1], hours, now)
        print(f"  booked the booth {begin.astimezone(cfg.tz):%H.%M}–{end.astimezone(cfg.tz):%H.%M}, reference {reference}; "
              f"the branch has synced: type 'booth {words[1]}'", file=out)
    except (ValueError, BookingError) as exc:
        print(f"  {exc}", file=out)


def _is_card_number(word: str) -> bool:
    """A card number here has a digit: a word of letters alone (``stauts``) is a mistyped command,
    not a card to tap and count as refused. Real cards may be letters only; the demo's are not."""
    try:
        normalize(word)
    except CardNumberError:
        return False
    return any(char.isdigit() for char in word)


def _simulate(cfg, controller: Controller, factory, simulated: SimulatedInput, args: list[str], out: TextIO) -> None:
    """Move one door's input pin and say what the door made of it."""
    doors = [d for d in cfg.doors if getattr(d, simulated.pin_field) is not None]
    if not args:
        named = doors[:1]
    else:
        named = [d for d in doors if len(args) == 1 and d.id == args[0]]
    if not named:
        choices = " or ".join(d.id for d in doors) or "none in this config"
        print(f"  usage: {simulated.command} [DOOR], where DOOR is {choices}", file=out)
        return
    door = named[0]
    pin = factory.pin(getattr(door, simulated.pin_field))
    if simulated.action == "open":
        pin.drive_high()  # the contact opens: the pull-up wins
    elif simulated.action == "close":
        pin.drive_low()
    else:
        pin.drive_low()
        pin.drive_high()
    # Read on the loop thread, after it has handled the pin's change.
    state, inside = controller.call(lambda: (controller.doors[door.id].state, controller.occupancy.count))
    print("  " + simulated.reply.format(door=door.id, state=state, inside=inside), file=out)
