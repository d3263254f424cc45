"""The ``omaovi`` command: one entry point for the device, the tools and the demo."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from central import cli as central_cli
from device import config as config_mod
from device.cards import CardNumberError, card_key, load_consortium_key
from device.config import Config, ConfigError
from device.events import parse_utc
from device.journald import configure_logging
from device.progress import ProgressLine
from device.schedule import ambiguous, offset_text, timeline_lines
from device.store import Store

log = logging.getLogger("omaovi")


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", default=os.environ.get("OMAOVI_CONFIG", config_mod.DEFAULT_PATH),
        help="the branch's TOML file (default: $OMAOVI_CONFIG or %(default)s)",
    )


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _positive(kind: type) -> Callable[[str], int | float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be a number above zero")
        return value

    return parse


def _since(text: str) -> datetime:
    """A local date or date-time, or an age such as 30m, 2h, 7d."""
    try:
        return datetime.now(timezone.utc) - config_mod.parse_duration(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a date-time (2026-11-23 or 2026-11-23T08:00) nor an age (30m, 2h, 7d)") from None


def _name_actions(group, actions: tuple[tuple[str, str], ...]) -> None:
    """Subcommands that take a NAME and the config, except ``list``, which takes only the config."""
    for action, text in actions:
        p = group.add_parser(action, help=text)
        if action != "list":
            p.add_argument("name")
        _config_arg(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omaovi", description="Door controller for self-service libraries.")
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("device", help="run the door controller (readers, doors, decisions)")
    _config_arg(p)

    p = sub.add_parser("demo", help="run the device on simulated hardware with demo data; type card numbers")
    p.add_argument("--dir", default="demo-data", help="where the demo keeps its config and database (default: %(default)s)")
    p.add_argument("--fresh", action="store_true", help="start again from fresh demo data")
    p.add_argument("--web-port", type=int, default=8080, help="the staff page's port on 127.0.0.1 (default: %(default)s; 0: any free port)")
    p.add_argument("--central-port", type=int, default=8090,
                   help="the central service's port on 127.0.0.1 (default: %(default)s; 0: any free port)")

    p = sub.add_parser("doctor", help="check the installation: config, database, key, readers, pins, clock, central service, SIP2")
    p.add_argument("--pulse", metavar="DOOR", help="instead: unlock DOOR once for its unlock_seconds, to test the relay")
    p.add_argument("--sip2-card", metavar="NUMBER",
                   help="instead: look up this test card in the library system and show how the SIP2 profile reads each field")
    _config_arg(p)

    p = sub.add_parser("sip2-dropin", help="print the device unit's drop-in that lets it reach the [sip2] server "
                       "and nothing else (systemd/install.sh writes it); nothing without [sip2]")
    _config_arg(p)

    p = sub.add_parser("web", help="serve the staff page and the API (waitress, on [web] host and port)")
    _config_arg(p)

    users = sub.add_parser("user", help="staff users of the staff page").add_subparsers(dest="action", required=True, metavar="ACTION")
    p = users.add_parser("add", help="add a staff user; asks for the password twice")
    p.add_argument("name")
    p.add_argument("--role", choices=("staff", "admin"), default="staff", help="admin may also manage users, cards and settings")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of standard input")
    _config_arg(p)
    p = users.add_parser("passwd", help="set a user's password (ends the user's sessions)")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of standard input")
    _config_arg(p)
    _name_actions(users, (("disable", "disable a user and end the user's sessions"), ("enable", "enable a disabled user"),
                          ("list", "list the staff users")))

    tokens = sub.add_parser("token", help="API tokens for the central office and monitoring").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    _name_actions(tokens, (("add", "make a token and print it, the only time it is shown"), ("revoke", "revoke a token at once"),
                           ("list", "list the tokens, revoked ones too, with when each was last used")))

    central = sub.add_parser("central", help="for the central office").add_subparsers(dest="action", required=True, metavar="ACTION")
    COMMANDS.update({("central", action): handler for action, handler in central_cli.add_parsers(central).items()})
    p = central.add_parser("pull", help="gather the daily statistics of many branches into one CSV")
    p.add_argument("--branches", required=True, metavar="FILE.toml", help="the branches: [[branches]] id, url, token_file")
    p.add_argument("--from", dest="start", type=_date, required=True, metavar="D", help="the first local date, YYYY-MM-DD")
    p.add_argument("--to", dest="end", type=_date, required=True, metavar="D", help="the last local date, YYYY-MM-DD")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="the combined CSV, one row per branch and day")
    _dialect_arg(p, "rfc4180")
    p.add_argument("--parallel", type=_positive(int), default=8, metavar="N", help="branches asked at the same time (default: %(default)s)")
    p.add_argument("--attempts", type=_positive(int), default=3, metavar="N",
                   help="tries per branch before it is listed as failed (default: %(default)s)")
    p.add_argument("--timeout", type=_positive(float), default=30.0, metavar="SECONDS",
                   help="how long to wait for a branch to connect or send (default: %(default)s)")

    p = sub.add_parser("sync", help="keep patrons, reservations and hours in step with the central service, and send events")
    p.add_argument("--once", action="store_true", help="one round of every stream, then exit (non-zero if any failed)")
    _config_arg(p)

    p = sub.add_parser("check-config", help="check a config file and list every problem")
    p.add_argument("file", nargs="?", default=os.environ.get("OMAOVI_CONFIG", config_mod.DEFAULT_PATH))

    p = sub.add_parser("card-key", help="print the card_key of a card number (to compare with the central service)")
    p.add_argument("number")
    _config_arg(p)

    patrons = sub.add_parser("patrons", help="patron permissions").add_subparsers(dest="action", required=True, metavar="ACTION")
    p = patrons.add_parser("import", help="load patron permissions from a CSV file (card numbers are hashed); columns: docs/imports.md")
    p.add_argument("file")
    p.add_argument("--replace", action="store_true", help="replace the whole cache instead of adding and updating")
    _config_arg(p)

    hours = sub.add_parser("hours", help="opening hours").add_subparsers(dest="action", required=True, metavar="ACTION")
    p = hours.add_parser("import", help="import dated hours from a Kirkanta (Finnish library directory) JSON file")
    p.add_argument("file")
    _config_arg(p)
    p = hours.add_parser("show", help="print a day's hours in local time")
    p.add_argument("--date", type=_date, help="the day (default: today)")
    p.add_argument("--days", type=int, default=1, help="how many days from --date (default: 1)")
    _config_arg(p)

    p = sub.add_parser("events", help="print the event log, newest first")
    p.add_argument("--since", type=_since, help="a local date-time or an age such as 2h or 7d")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    _config_arg(p)

    p = sub.add_parser("stats", help="visit statistics per local hour, day, ISO week or month")
    p.add_argument("--from", dest="start", type=_date, required=True)
    p.add_argument("--to", dest="end", type=_date, required=True)
    p.add_argument("--by", choices=("hour", "day", "week", "month"), default="day")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    _dialect_arg(p, "rfc4180")
    _config_arg(p)
    return parser


def _dialect_arg(parser: argparse.ArgumentParser, default: str) -> None:
    from device.stats_csv import DIALECTS

    parser.add_argument("--dialect", choices=DIALECTS, default=default,
                        help="excel-fi: ';', decimal comma and a BOM, for Excel on a Finnish PC; "
                             "rfc4180: ',' and a decimal point, for programs (default: %(default)s)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(
        logging.DEBUG if args.verbose else logging.INFO,
        "%(asctime)s %(levelname)s %(name)s: %(message)s",
        identifier=f"omaovi-{args.command}",
    )
    handler = COMMANDS[(args.command, getattr(args, "action", None))]
    try:
        return handler(args) or 0
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        if args.command != "central":  # check-config reads a branch's file, not central.toml
            print(f"Run 'omaovi check-config {exc.path}' after fixing it.", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"omaovi {args.command}: {exc.filename}: file not found", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"omaovi {args.command}: {exc}", file=sys.stderr)
        return 1


def _load(args) -> Config:
    return config_mod.load(args.config)


def _store(cfg: Config, durable: bool = False) -> Store:
    cfg.database.parent.mkdir(parents=True, exist_ok=True)
    return Store(cfg.database, durable=durable)


def cmd_check_config(args) -> int:
    try:
        cfg = config_mod.load(args.file)
    except ConfigError as exc:
        print(exc)
        print(f"{len(exc.problems)} problem(s) found.")
        return 1
    print(f"{cfg.path}: OK — branch {cfg.branch}, {len(cfg.doors)} door(s): " + ", ".join(f"{d.id} ({d.kind})" for d in cfg.doors))
    for warning in config_mod.warnings(cfg):
        print(f"warning: {warning}")
    return 0


def cmd_sip2_dropin(args) -> int:
    from device.unit_network import sip2_dropin

    try:
        _, sections = config_mod.load_sections(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if sections.sip2 is None:
        return 0
    try:
        sys.stdout.write(sip2_dropin(sections.sip2))
    except (OSError, ValueError) as exc:
        print(f"sip2.host {sections.sip2.host}: cannot be resolved: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_device(args) -> int:
    from device.controller import Controller, sip2_checker
    from device.systemd_notify import LoopNotifier, Notifier, watchdog_interval

    cfg, sections = config_mod.load_sections(args.config)
    # Built first: an unreadable password file stops the start before any pin is touched.
    checker = sip2_checker(sections.sip2) if sections.sip2 is not None else None
    store, storage_error = _device_store(cfg)
    controller = Controller(
        cfg, store, keep_unpushed_events=sections.central is not None, sip2=checker, storage_error=storage_error,
        reopen=(lambda: _store(cfg, durable=True)) if storage_error else None,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("device started: branch %s, doors %s%s", cfg.branch, ", ".join(controller.doors),
             f", SIP2 check at {sections.sip2.host}:{sections.sip2.port}" if sections.sip2 else "")
    # READY=1 once the loop runs, WATCHDOG=1 from the loop itself (see systemd_notify).
    notifier = Notifier()
    running = f"branch {cfg.branch}, doors {', '.join(controller.doors)}"
    on_tick = LoopNotifier(
        notifier, watchdog_interval(),
        status=lambda: f"{controller.storage_warning}; {running}" if controller.storage_warning else running,
    )
    try:
        controller.run(stop, on_tick=on_tick)
    finally:
        notifier.stopping()
        controller.close()
        if checker is not None:
            checker.close()
        store.close()
        notifier.close()
    return 0


def _device_store(cfg: Config) -> tuple[Store, str | None]:
    """The database for the door, and why it could not be opened for writing (else None).

    A database that cannot be written at start (a read-only file system, a file
    that ``sudo omaovi ...`` left owned by root) must not keep every door shut, as
    exiting would: systemd would restart the device forever. It starts in the
    storage-failed mode instead, reading the database read-only, or, when it cannot
    even be read, only the staff card copy kept beside it.
    """
    from device import staff_copy
    from device.controller import REOPEN_SECONDS

    try:
        return _store(cfg, durable=True), None
    except (sqlite3.Error, OSError) as exc:
        error = f"cannot open {cfg.database} for writing: {exc}"
    try:
        store, source = Store.read_only(cfg.database), "read from the database, read-only"
    except sqlite3.Error as exc:
        copy = staff_copy.copy_path(cfg.database)
        error += f"; cannot read it either: {exc}"
        try:
            keys = staff_copy.load(copy)
            source = f"from the copy {copy}"
        except OSError as copy_exc:
            keys, source = frozenset(), f"none: the copy {copy} cannot be read ({copy_exc.strerror})"
        store = Store.in_memory(keys)
    log.critical(
        "STORAGE FAILED at start: %s. Only staff cards open the doors (staff cards %s); events wait in "
        "memory and are lost if the device stops. "
        "Run 'omaovi doctor' and fix the database's owner or file system; the device tries it again every %d seconds.",
        error, source, REOPEN_SECONDS, extra={"event_type": "storage_failed"},
    )
    return store, error


def cmd_sync(args) -> int:
    from sync.central import SyncRunner

    config, central = config_mod.load_with_central(args.config, required=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runner = SyncRunner(_store(config), config, central, stop=stop)
    if args.once:
        errors = {stream: error for stream, error in runner.run_once().items() if error}
        for stream, error in errors.items():
            print(f"{stream}: {error}", file=sys.stderr)
        if stop.is_set():
            print("sync: stopped before every stream was done; the next round carries on", file=sys.stderr)
            return 1
        return 1 if errors else 0
    runner.run_forever(stop)
    return 0


def cmd_web(args) -> int:
    from admin_web.serve import serve

    return serve(_load(args))


def _read_new_password(args) -> str:
    """From stdin with --password-stdin (for scripts), else asked twice without echo."""
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"Password for {args.name}: ")
    if first != getpass.getpass("Again: "):
        raise ValueError("the passwords do not match; nothing was changed")
    return first


def _console_actor() -> str:
    """Who the audit log says acted from the console: the Unix user behind sudo, if any."""
    import getpass

    return f"console:{os.environ.get('SUDO_USER') or getpass.getuser()}"


def cmd_user(args) -> int:
    from admin_web import accounts, audit

    cfg = _load(args)
    store = _store(cfg)
    if args.action == "list":
        for user in accounts.users(store):
            state = "disabled" if user.disabled else "enabled"
            print(f"{user.username:<24} {user.role:<6} {state:<9} since {user.created_at.astimezone(cfg.tz):%Y-%m-%d}")
        return 0
    password = _read_new_password(args) if args.action in ("add", "passwd") else None
    try:
        with store.conn:  # the change and its audit entry: both or neither
            if args.action == "add":
                accounts.add_user(store, args.name, password, args.role)
            elif args.action == "passwd":
                accounts.set_password(store, args.name, password)
            else:
                accounts.set_disabled(store, args.name, args.action == "disable")
            detail = {"role": args.role} if args.action == "add" else None
            audit.record(store, _console_actor(), f"user.{args.action}", args.name, detail)
    except accounts.AccountError as exc:
        print(f"omaovi user {args.action}: {exc}", file=sys.stderr)
        return 1
    # Only "add" has --role: the other actions' words must not ask for it.
    done = {"passwd": "Changed the password of {name}; their sessions ended.",
            "disable": "Disabled {name}; their sessions ended.", "enable": "Enabled {name}."}
    print(f"Added {args.role} user {args.name}." if args.action == "add" else done[args.action].format(name=args.name))
    return 0


def cmd_token(args) -> int:
    from admin_web import audit, tokens

    cfg = _load(args)
    store = _store(cfg)
    if args.action == "list":
        if not tokens.tokens(store):
            print("No API tokens. Make one with 'omaovi token add NAME'.")
        for token in tokens.tokens(store):
            state = f"revoked {_local_day(token.revoked_at, cfg)}" if token.revoked_at else "active"
            used = f"last used {token.last_used_at.astimezone(cfg.tz):%Y-%m-%d %H:%M}" if token.last_used_at else "never used"
            print(f"{token.name:<24} {state:<18} since {_local_day(token.created_at, cfg)}  {used}")
        return 0
    try:
        with store.conn:  # the change and its audit entry: both or neither
            if args.action == "add":
                secret = tokens.add(store, args.name)
            else:
                tokens.revoke(store, args.name)
            audit.record(store, _console_actor(), f"token.{args.action}", args.name)
    except tokens.TokenError as exc:
        print(f"omaovi token {args.action}: {exc}", file=sys.stderr)
        return 1
    if args.action == "add":
        print(secret)
        print(f"Added API token {args.name}. It is shown only this once: put it in the caller's token file now.", file=sys.stderr)
    else:
        print(f"Revoked API token {args.name}; calls with it are refused from now on.")
    return 0


def _local_day(moment: datetime, cfg: Config) -> str:
    return f"{moment.astimezone(cfg.tz):%Y-%m-%d}"


def cmd_central_pull(args) -> int:
    from admin_web.api import MAX_DAYS_DEFAULT
    from sync import central_pull

    try:
        sources = central_pull.load_branches(args.branches)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.end < args.start:
        print(f"omaovi central pull: --to {args.end} is before --from {args.start}", file=sys.stderr)
        return 2
    if (args.end - args.start).days + 1 > MAX_DAYS_DEFAULT:
        print(f"omaovi central pull: a pull covers at most {MAX_DAYS_DEFAULT} days; pull a year at a time", file=sys.stderr)
        return 2
    if not Path(args.out).resolve().parent.is_dir():
        print(f"omaovi central pull: --out {args.out}: there is no folder {Path(args.out).resolve().parent}", file=sys.stderr)
        return 2
    periods, failures = central_pull.pull(
        sources, args.start, args.end, workers=args.parallel, attempts=args.attempts, timeout=args.timeout,
        progress=central_pull.Progress(len(sources)),
    )
    rows = central_pull.write_csv(args.out, sources, periods, args.dialect)
    print(f"Wrote {rows} row(s) from {len(periods)} of {len(sources)} branch(es) to {args.out}.")
    if failures:
        print(f"{len(failures)} branch(es) failed and are not in the file:", file=sys.stderr)
        for source in sources:
            if source.id in failures:
                print(f"  {source.id}: {failures[source.id]}", file=sys.stderr)
        return 1
    return 0


def cmd_doctor(args) -> int:
    from device import doctor

    if args.pulse:
        return doctor.pulse(args.config, args.pulse, sys.stdout)
    if args.sip2_card is not None:
        return doctor.sip2_card(args.config, args.sip2_card, sys.stdout)
    return doctor.report(doctor.Doctor().run(args.config), sys.stdout)


def cmd_demo(args) -> int:
    from device.demo import run_demo

    return run_demo(Path(args.dir), fresh=args.fresh, web_port=args.web_port, central_port=args.central_port)


def cmd_card_key(args) -> int:
    cfg = _load(args)
    try:
        print(card_key(load_consortium_key(cfg.consortium_key_file), args.number))
    except CardNumberError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def cmd_patrons_import(args) -> int:
    from device.pins import load_pepper
    from sync.patrons_csv import EmptyReplace, PatronCsvError, file_size, import_patrons

    cfg = _load(args)
    key = load_consortium_key(cfg.consortium_key_file)
    pepper = load_pepper(cfg.pin.pepper_file) if cfg.pin is not None else None
    store = _store(cfg)
    try:
        with open(args.file, "rb") as stream:
            bar = ProgressLine(sys.stderr, file_size(stream))
            imported = import_patrons(
                store, stream, key, datetime.now(timezone.utc), source=args.file, replace=args.replace, pin_pepper=pepper,
                total_bytes=bar.total, by=_console_actor(), progress=bar.show,
            )
            bar.close()
    except PatronCsvError as exc:
        bar.close()
        print(exc, file=sys.stderr)
        print("Nothing was imported.", file=sys.stderr)
        return 1
    except EmptyReplace:
        bar.close()
        print(f"{args.file}: the file has no patrons; --replace would empty the whole cache. Nothing was imported.", file=sys.stderr)
        return 1
    print(f"Imported {imported.count} patron(s){' (cache replaced)' if args.replace else ''}.")
    if imported.ageless:
        print(f"Warning: {imported.ageless} patron(s) have no age_ok_from; the door refuses them (underage) in "
              "self-service hours. Add the age_ok_from column (the date each patron reaches the age limit).",
              file=sys.stderr)
    return 0


def cmd_hours_import(args) -> int:
    from sync.kirkanta import KirkantaError, parse_days, split

    cfg = _load(args)
    try:
        days, notes = split(parse_days(Path(args.file).read_bytes()))
    except KirkantaError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        print("Nothing was imported.", file=sys.stderr)
        return 1
    _store(cfg).set_exceptions(days, note="Kirkanta", notes=notes, source="kirkanta")
    if days:
        print(f"Imported hours for {len(days)} day(s), {min(days)} to {max(days)}.")
    else:
        print("The file had no days.")
    return 0


def cmd_hours_show(args) -> int:
    cfg = _load(args)
    store = _store(cfg)
    schedule = store.schedule(cfg.tz)
    first = args.date or datetime.now(cfg.tz).date()
    last = first + timedelta(days=max(1, args.days) - 1)
    notes = {row["date"]: row["note"] for row in store.exception_days(first, last) if row["note"]}
    print("\n".join(timeline_lines(schedule, first, args.days, cfg.timezone, notes)))
    return 0


def cmd_events(args) -> int:
    cfg = _load(args)
    rows = _store(cfg).events(since=args.since, limit=args.limit)
    for row in rows:
        local = parse_utc(row["ts"]).astimezone(cfg.tz)
        if args.json:
            detail = json.loads(row["detail"]) if row["detail"] else None  # an object, as in the central protocol
            print(json.dumps(row | {"detail": detail, "local_time": local.isoformat(timespec="seconds")}, ensure_ascii=False))
        else:
            what = row["reason"] or ""
            card = (row["card_key"] or "")[:12]
            # In the hour that repeats when the clocks go back, 03:15 comes twice: the offset tells them apart.
            when = f"{local:%Y-%m-%d %H:%M:%S}" + (offset_text(local) if ambiguous(local) else "")
            print(f"{when}  {row['door']:<12} {row['type']:<18} {what:<20} {row['mode'] or '':<13} {card}")
    if not rows and not args.json:
        print("No events.")
    return 0


def cmd_stats(args) -> int:
    from device import stats_csv
    from device.stats import FIELDS, summarize

    cfg = _load(args)
    rows = summarize(_store(cfg), cfg.tz, args.start, args.end, args.by)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    elif args.csv:
        sys.stdout.write(stats_csv.write(FIELDS, ([row[name] for name in FIELDS] for row in rows), args.dialect))
    else:
        _print_stats_table(rows, FIELDS)
    return 0


def _print_stats_table(rows: list[dict], fields: tuple[str, ...]) -> None:
    """The figures as columns with a total; the hours still to come below, apart, since they are no open hours yet."""
    planned = [f for f in fields if f.endswith("_planned")]
    shown = [f for f in fields if f not in planned]
    widths = [max(len(f), 10) for f in shown]
    widths[0] = max(len(r["period"]) for r in rows) if rows else 10
    print("  ".join(f.ljust(w) for f, w in zip(shown, widths)))
    for row in rows:
        print("  ".join(str(row[f]).ljust(w) for f, w in zip(shown, widths)))
    totals = {f: round(sum(r[f] for r in rows), 2) for f in fields[1:]}
    print("  ".join(["total".ljust(widths[0])] + [str(totals[f]).ljust(w) for f, w in zip(shown[1:], widths[1:])]))
    if any(totals[f] for f in planned):
        print("not yet come, planned by the hours in force now: "
              + ", ".join(f"{f.removesuffix('_planned')} {totals[f]}" for f in planned))


COMMANDS = {
    ("device", None): cmd_device,
    ("demo", None): cmd_demo,
    ("sync", None): cmd_sync,
    ("web", None): cmd_web,
    **{("user", action): cmd_user for action in ("add", "passwd", "disable", "enable", "list")},
    **{("token", action): cmd_token for action in ("add", "list", "revoke")},
    ("central", "pull"): cmd_central_pull,
    ("doctor", None): cmd_doctor,
    ("sip2-dropin", None): cmd_sip2_dropin,
    ("check-config", None): cmd_check_config,
    ("card-key", None): cmd_card_key,
    ("patrons", "import"): cmd_patrons_import,
    ("hours", "import"): cmd_hours_import,
    ("hours", "show"): cmd_hours_show,
    ("events", None): cmd_events,
    ("stats", None): cmd_stats,
}

if __name__ == "__main__":
    sys.exit(main())
