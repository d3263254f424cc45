"""The ``omaovi`` command: one entry point for the device, the tools and the demo."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import signal
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from device import config as config_mod
from device.cards import CardNumberError, card_key, load_consortium_key
from device.config import Config, ConfigError
from device.events import parse_utc
from device.journald import configure_logging
from device.schedule import segment_text
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omaovi", description="Door controller for self-service libraries.")
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("device", help="run the door controller (readers, doors, decisions)")
    _config_arg(p)

    p = sub.add_parser("demo", help="run the device on simulated hardware with demo data; type card numbers")
    p.add_argument("--dir", default="demo-data", help="where the demo keeps its config and database (default: %(default)s)")
    p.add_argument("--fresh", action="store_true", help="start again from fresh demo data")

    p = sub.add_parser("doctor", help="check the installation: config, database, key, readers, pins, clock, central service, SIP2")
    p.add_argument("--pulse", metavar="DOOR", help="instead: unlock DOOR once for its unlock_seconds, to test the relay")
    _config_arg(p)

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

    p = sub.add_parser("stats", help="visit statistics per local hour or day")
    p.add_argument("--from", dest="start", type=_date, required=True)
    p.add_argument("--to", dest="end", type=_date, required=True)
    p.add_argument("--by", choices=("hour", "day"), default="day")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    _config_arg(p)
    return parser


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
    return 0


def cmd_device(args) -> int:
    from device.controller import Controller, sip2_checker
    from device.systemd_notify import LoopNotifier, Notifier, watchdog_interval

    cfg, sections = config_mod.load_sections(args.config)
    # Built first: an unreadable password file stops the start before any pin is touched.
    checker = sip2_checker(sections.sip2) if sections.sip2 is not None else None
    store = _store(cfg, durable=True)
    controller = Controller(cfg, store, keep_unpushed_events=sections.central is not None, sip2=checker)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("device started: branch %s, doors %s%s", cfg.branch, ", ".join(controller.doors),
             f", SIP2 check at {sections.sip2.host}:{sections.sip2.port}" if sections.sip2 else "")
    # READY=1 once the loop runs, WATCHDOG=1 from the loop itself (see systemd_notify).
    notifier = Notifier()
    on_tick = LoopNotifier(notifier, watchdog_interval(), status=f"branch {cfg.branch}, doors {', '.join(controller.doors)}")
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


def cmd_sync(args) -> int:
    from sync.central import SyncRunner

    runner = SyncRunner.from_config_file(args.config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.once:
        errors = {stream: error for stream, error in runner.run_once().items() if error}
        for stream, error in errors.items():
            print(f"{stream}: {error}", file=sys.stderr)
        return 1 if errors else 0
    runner.run_forever(stop)
    return 0


def cmd_doctor(args) -> int:
    from device import doctor

    if args.pulse:
        return doctor.pulse(args.config, args.pulse, sys.stdout)
    return doctor.report(doctor.Doctor().run(args.config), sys.stdout)


def cmd_demo(args) -> int:
    from device.demo import run_demo

    return run_demo(Path(args.dir), fresh=args.fresh)


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
    from sync.patrons_csv import PatronCsvError, read_patrons

    cfg = _load(args)
    key = load_consortium_key(cfg.consortium_key_file)
    try:
        pepper = load_pepper(cfg.pin.pepper_file) if cfg.pin is not None else None
        patrons = read_patrons(args.file, key, datetime.now(timezone.utc), pepper)
    except PatronCsvError as exc:
        print(exc, file=sys.stderr)
        print("Nothing was imported.", file=sys.stderr)
        return 1
    if args.replace and not patrons:
        print(f"{args.file}: the file has no patrons; --replace would empty the whole cache. Nothing was imported.", file=sys.stderr)
        return 1
    store = _store(cfg)
    count = store.put_patrons(patrons, source="csv", replace=args.replace)
    print(f"Imported {count} patron(s){' (cache replaced)' if args.replace else ''}.")
    ageless = sum(1 for p in patrons if p.age_ok_from is None and not p.staff)
    if ageless:
        print(f"Warning: {ageless} patron(s) have no age_ok_from; the door refuses them (underage) in "
              "self-service hours. Add the age_ok_from column (the date each patron reaches the age limit).",
              file=sys.stderr)
    return 0


def cmd_hours_import(args) -> int:
    from sync.kirkanta import KirkantaError, parse_schedules

    cfg = _load(args)
    try:
        days = parse_schedules(Path(args.file).read_bytes())
    except KirkantaError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        print("Nothing was imported.", file=sys.stderr)
        return 1
    _store(cfg).set_exceptions(days, note="Kirkanta", source="kirkanta")
    if days:
        print(f"Imported hours for {len(days)} day(s), {min(days)} to {max(days)}.")
    else:
        print("The file had no days.")
    return 0


MODE_NAMES = {"self_service": "self-service", "staffed": "staffed", "closed": "closed"}


def cmd_hours_show(args) -> int:
    cfg = _load(args)
    schedule = _store(cfg).schedule(cfg.tz)
    first = args.date or datetime.now(cfg.tz).date()
    for offset in range(max(1, args.days)):
        day = first + timedelta(days=offset)
        source = "exception" if day in schedule.exceptions else "weekly pattern"
        print(f"{day.strftime('%A')} {day.isoformat()} ({source}, {cfg.timezone})")
        for start, end, mode in schedule.day_timeline(day):
            dst = f"  [{start:%Z}→{end:%Z}]" if start.utcoffset() != end.utcoffset() else ""
            print(f"  {segment_text(start, end)}  {MODE_NAMES[mode]}{dst}")
    return 0


def cmd_events(args) -> int:
    cfg = _load(args)
    rows = _store(cfg).events(since=args.since, limit=args.limit)
    for row in rows:
        local = parse_utc(row["ts"]).astimezone(cfg.tz)
        if args.json:
            print(json.dumps(row | {"local_time": local.isoformat(timespec="seconds")}, ensure_ascii=False))
        else:
            what = row["reason"] or ""
            card = (row["card_key"] or "")[:12]
            print(f"{local:%Y-%m-%d %H:%M:%S}  {row['door']:<12} {row['type']:<18} {what:<20} {row['mode'] or '':<13} {card}")
    if not rows and not args.json:
        print("No events.")
    return 0


def cmd_stats(args) -> int:
    from device.stats import FIELDS, summarize

    cfg = _load(args)
    rows = summarize(_store(cfg), cfg.tz, args.start, args.end, args.by)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    elif args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        widths = [max(len(f), 10) for f in FIELDS]
        widths[0] = max(len(r["period"]) for r in rows) if rows else 10
        print("  ".join(f.ljust(w) for f, w in zip(FIELDS, widths)))
        for row in rows:
            print("  ".join(str(row[f]).ljust(w) for f, w in zip(FIELDS, widths)))
        totals = {f: sum(r[f] for r in rows) for f in FIELDS[1:]}
        print("  ".join(["total".ljust(widths[0])] + [str(totals[f]).ljust(w) for f, w in zip(FIELDS[1:], widths[1:])]))
    return 0


COMMANDS = {
    ("device", None): cmd_device,
    ("demo", None): cmd_demo,
    ("sync", None): cmd_sync,
    ("doctor", None): cmd_doctor,
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
