"""``omaovi central …``: running the central service and looking after its data from the console.

Each handler opens the database named in ``central.toml``, does one thing in one
transaction and says what it did. SQLAlchemy is imported only when a central
command runs, so the branch's commands do not pay for it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

DEFAULT_CONFIG = "/etc/omaovi/central.toml"
#: Booth bookings typed at the console are in the consortium's local time.
LOCAL = ZoneInfo("Europe/Helsinki")


def add_parsers(central) -> dict:
    """Add the central service's subcommands to ``omaovi central``; returns their handlers by action."""
    p = central.add_parser("serve", help="run the central service that the branches sync with (waitress, [server] host and port)")
    _config_arg(p)
    p = central.add_parser("branch-add", help="add a branch (or rename one), so it can get a token and bookings")
    p.add_argument("branch", help="the branch's id, as `branch` in its omaovi.toml")
    p.add_argument("--name", required=True, help="the branch's name, as patrons know it")
    _config_arg(p)
    p = central.add_parser("booth-add", help="add a bookable booth to a branch (or rename one)")
    p.add_argument("branch")
    p.add_argument("resource", help="the booth door's `resource` in the branch's omaovi.toml")
    p.add_argument("--name", required=True, help="the booth's name, as patrons see it")
    _booth_rule_args(p)
    _config_arg(p)
    p = central.add_parser("token-add", help="make a device token for a branch; printed once, stored only as a hash")
    p.add_argument("branch")
    p.add_argument("name", help="what the token is for, e.g. the Pi's host name")
    _config_arg(p)
    p = central.add_parser("token-revoke", help="revoke a branch's device token at once")
    p.add_argument("branch")
    p.add_argument("name")
    _config_arg(p)
    p = central.add_parser("token-list", help="list the branches' device tokens, with when each was last used")
    _config_arg(p)
    p = central.add_parser("patrons-import", help="load patron permissions from a CSV file (card numbers hashed); columns: docs/imports.md")
    p.add_argument("file")
    _config_arg(p)
    p = central.add_parser("patrons-sync-koha", help="replace the patron permissions with those in Koha ([koha] in central.toml), once")
    _config_arg(p)
    p = central.add_parser("book", help="book a booth for a patron at the desk; prints the booking reference")
    p.add_argument("branch")
    p.add_argument("resource")
    p.add_argument("--card", required=True, metavar="NUMBER", help="the patron's card number (hashed at once, never stored)")
    p.add_argument("--start", required=True, type=_local_time, metavar="'YYYY-MM-DD HH:MM'", help="local time (Europe/Helsinki)")
    p.add_argument("--hours", required=True, type=float, metavar="H", help="the length in hours, e.g. 2 or 1.5")
    _desk_override_arg(p)
    _config_arg(p)
    p = central.add_parser("cancel", help="cancel a booking by its reference")
    p.add_argument("reference")
    _config_arg(p)
    _add_hours_parsers(central)
    return HANDLERS


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", default=os.environ.get("OMAOVI_CENTRAL_CONFIG", DEFAULT_CONFIG),
        help="the central service's TOML file (default: $OMAOVI_CENTRAL_CONFIG or %(default)s)",
    )


def _local_time(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=LOCAL)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a local time (YYYY-MM-DD HH:MM)") from None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _open(args):
    from central import config, db

    settings = config.load(args.config)
    engine = db.open_engine(settings.database_url)
    db.migrate(engine)
    return settings, engine


def cmd_serve(args) -> int:
    from central import config
    from central.serve import serve

    return serve(config.load(args.config))


def cmd_branch_add(args) -> int:
    from central import branches, db

    _, engine = _open(args)
    with db.writing(engine) as connection:
        branches.put_branch(connection, args.branch, args.name)
    print(f"Branch {args.branch} ({args.name}) is ready. Make its device token with: omaovi central token-add {args.branch} NAME")
    return 0


def cmd_booth_add(args) -> int:
    from central import branches, db

    _, engine = _open(args)
    with db.writing(engine) as connection:
        rules = branches.put_booth(connection, args.branch, args.resource, args.name, **_rule_changes(args))
    print(f"Booth {args.resource} ({args.name}) of branch {args.branch} can be booked: {_describe_rules(rules)}.")
    return 0


def cmd_token_add(args) -> int:
    from central import db, tokens

    _, engine = _open(args)
    with db.writing(engine) as connection:
        token = tokens.add(connection, args.branch, args.name, _now())
    print(token)
    print(f"Added device token {args.name} for branch {args.branch}. It is shown only this once: put it in the branch's "
          "central.token_file now.", file=sys.stderr)
    return 0


def cmd_token_revoke(args) -> int:
    from central import db, tokens

    _, engine = _open(args)
    with db.writing(engine) as connection:
        tokens.revoke(connection, args.branch, args.name, _now())
    print(f"Revoked token {args.name} of branch {args.branch}; its requests are refused from now on.")
    return 0


def cmd_token_list(args) -> int:
    from central import db, tokens

    _, engine = _open(args)
    with db.reading(engine) as connection:
        rows = tokens.listing(connection)
    if not rows:
        print("No device tokens. Make one with 'omaovi central token-add BRANCH NAME'.")
    for row in rows:
        state = f"revoked {row.revoked.astimezone(LOCAL):%Y-%m-%d}" if row.revoked else "active"
        used = f"last used {row.last_used.astimezone(LOCAL):%Y-%m-%d %H:%M}" if row.last_used else "never used"
        print(f"{row.branch_id:<16} {row.name:<24} {state:<18} since {row.created.astimezone(LOCAL):%Y-%m-%d}  {used}")
    return 0


def cmd_patrons_import(args) -> int:
    from central import db, patrons
    from device.cards import load_consortium_key
    from sync.patrons_csv import PatronCsvError, read_patrons

    settings, engine = _open(args)
    try:
        rows = read_patrons(args.file, load_consortium_key(settings.consortium_key_file), _now(), keep_pin_verifiers=True)
    except PatronCsvError as exc:
        print(exc, file=sys.stderr)
        print("Nothing was imported.", file=sys.stderr)
        return 1
    with db.writing(engine) as connection:
        changed = patrons.put(connection, rows, _now())
    print(f"Read {len(rows)} patron(s); {changed} new or changed, sent to the branches at their next sync.")
    return 0


def cmd_patrons_sync_koha(args) -> int:
    from central.koha import KohaError
    from central.koha_sync import sync

    settings, engine = _open(args)
    try:
        result = sync(settings, engine, _now())
    except KohaError as exc:
        print(f"{exc}\nNothing was changed.", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


def cmd_book(args) -> int:
    from central import bookings, db
    from central.booking_rules import DESK_OVERRIDABLE, Reason
    from device.cards import card_key, load_consortium_key

    settings, engine = _open(args)
    key = card_key(load_consortium_key(settings.consortium_key_file), args.card)
    begin = args.start.astimezone(timezone.utc)
    end = (begin + timedelta(hours=args.hours)).astimezone(LOCAL)  # real hours, also on the nights the clocks change
    overrides = frozenset(Reason(value) for value in args.override)
    with db.writing(engine) as connection:
        try:
            reference = bookings.request(connection, args.branch, args.resource, key, begin, end, _now(), desk_overrides=overrides)
        except bookings.Refused as refused:
            hint = f" (the desk may book it anyway with --override {refused.refusal.reason.value})" \
                if refused.refusal.reason in DESK_OVERRIDABLE - overrides else ""
            raise bookings.BookingError(f"not booked: {refused}{hint}") from None
        overridden = bookings.overrides_of(connection, reference)
    noted = f" Set aside on the record: {', '.join(sorted(r.value for r in overridden))}." if overridden else ""
    print(f"Booked {args.resource} of {args.branch} {args.start:%d.%m.%Y %H.%M}–{end:%H.%M}: reference {reference}.{noted}")
    return 0


def cmd_cancel(args) -> int:
    from central import bookings, db

    _, engine = _open(args)
    with db.writing(engine) as connection:
        bookings.cancel(connection, args.reference.upper(), _now())
    print(f"Cancelled {args.reference.upper()}; the branch stops opening for it at its next sync.")
    return 0


HANDLERS = {
    "serve": cmd_serve,
    "branch-add": cmd_branch_add,
    "booth-add": cmd_booth_add,
    "token-add": cmd_token_add,
    "token-revoke": cmd_token_revoke,
    "token-list": cmd_token_list,
    "patrons-import": cmd_patrons_import,
    "patrons-sync-koha": cmd_patrons_sync_koha,
    "book": cmd_book,
    "cancel": cmd_cancel,
}


# -- hours kept centrally, and booth booking rules ------------------------------------
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: What booth-add's rule options are called, by the BoothRules field each sets.
_RULE_OPTIONS = {
    "min_minutes": "min_hours", "max_minutes": "max_hours", "slot_minutes": "slot_minutes", "within": "within",
    "days_ahead": "days_ahead", "max_bookings": "max_bookings", "cancel_until_minutes": "cancel_until_minutes",
}


def _add_hours_parsers(central) -> None:
    p = central.add_parser("hours-import", help="store a Kirkanta schedules answer (JSON) as a branch's dated hours")
    p.add_argument("branch")
    p.add_argument("file", metavar="FILE.json")
    _config_arg(p)
    p = central.add_parser("hours-set", help="set a branch's weekly pattern for some weekdays, or one date's own hours")
    p.add_argument("branch")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--weekday", type=_weekdays, metavar="DAYS", help="e.g. mon, or sat,sun, or mon-fri")
    which.add_argument("--date", type=_date, metavar="YYYY-MM-DD", help="one date, instead of its weekday's hours")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--periods", metavar="'HH:MM-HH:MM MODE, …'",
                      help="e.g. '07:00-10:00 self_service, 10:00-20:00 staffed'; MODE is self_service, staffed or closed; "
                           "'closed' for a day closed all day")
    what.add_argument("--clear", action="store_true", help="with --date: the date follows its weekday again")
    p.add_argument("--note", default="", help="with --date: why, e.g. 'Christmas Eve'")
    _config_arg(p)
    p = central.add_parser("hours-show", help="show a branch's hours as kept centrally, day by day in local time")
    p.add_argument("branch")
    p.add_argument("--date", type=_date, metavar="YYYY-MM-DD", help="the first day (default: today at the branch)")
    p.add_argument("--days", type=_day_count, default=7, metavar="N", help="how many days (default 7, at most 400)")
    _config_arg(p)
    HANDLERS.update({"hours-import": cmd_hours_import, "hours-set": cmd_hours_set, "hours-show": cmd_hours_show})


def _booth_rule_args(p: argparse.ArgumentParser) -> None:
    """booth-add's rule options: those left out keep their value (a new booth starts from the defaults)."""
    p.add_argument("--min-hours", type=_hours, metavar="H", help="the shortest booking (default 1)")
    p.add_argument("--max-hours", type=_hours, metavar="H", help="the longest booking (default 4)")
    p.add_argument("--slot-minutes", type=int, metavar="M", help="bookings start and last in whole slots (default 30)")
    p.add_argument("--within", choices=("self_service", "staffed", "both"),
                   help="which open hours of the branch a booking must lie in (default both)")
    p.add_argument("--days-ahead", type=int, metavar="N", help="how many days ahead it can be booked (default 14)")
    p.add_argument("--max-bookings", type=int, metavar="N",
                   help="how many bookings not yet ended one card may hold at this branch (default 2)")
    p.add_argument("--cancel-until-minutes", type=int, metavar="M",
                   help="a patron may cancel until this many minutes before the start (default 0: until it starts)")


def _desk_override_arg(p: argparse.ArgumentParser) -> None:
    from central.booking_rules import DESK_OVERRIDABLE

    p.add_argument("--override", action="append", default=[], choices=sorted(reason.value for reason in DESK_OVERRIDABLE),
                   metavar="RULE", help="set aside one of this booth's rules, recorded with the booking: %(choices)s")


def _hours(text: str) -> int:
    """Hours as whole minutes."""
    try:
        minutes = float(text) * 60
    except ValueError:
        minutes = -1
    if not 0 < minutes <= 24 * 60 or minutes != int(minutes):
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a length in hours, e.g. 1 or 1.5")
    return int(minutes)


def _weekdays(text: str) -> list[int]:
    days: list[int] = []
    for part in text.lower().split(","):
        first, _, last = part.strip().partition("-")
        if first not in _WEEKDAYS or (last and last not in _WEEKDAYS):
            raise argparse.ArgumentTypeError(f"{text[:40]!r}: name days as {', '.join(_WEEKDAYS)}, e.g. mon-fri or sat,sun")
        start, end = _WEEKDAYS.index(first), _WEEKDAYS.index(last or first)
        if end < start:
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: a range runs from Monday towards Sunday")
        days += [day for day in range(start, end + 1) if day not in days]
    return days


def _date(text: str):
    from datetime import date

    try:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a date (YYYY-MM-DD)")


def _day_count(text: str) -> int:
    from central.hours import MAX_DAYS

    if not text.isdigit() or not 1 <= int(text) <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"{text[:20]!r}: give a number of days from 1 to {MAX_DAYS}")
    return int(text)


def _rule_changes(args) -> dict:
    return {field: getattr(args, option) for field, option in _RULE_OPTIONS.items() if getattr(args, option) is not None}


def _describe_rules(rules) -> str:
    within = {"both": "self-service or staffed", "self_service": "self-service", "staffed": "staffed"}[rules.within]
    return (f"{rules.min_minutes / 60:g}–{rules.max_minutes / 60:g} h in slots of {rules.slot_minutes} min, within its "
            f"{within} hours, up to {rules.days_ahead} days ahead, {rules.max_bookings} booking(s) per card at this branch, "
            f"cancellable until {rules.cancel_until_minutes} min before the start")


def cmd_hours_import(args) -> int:
    from pathlib import Path

    from central import db, hours

    _, engine = _open(args)
    document = Path(args.file).read_bytes()
    with db.writing(engine) as connection:
        try:
            days = hours.import_kirkanta(connection, args.branch, document)
        except hours.HoursError as exc:
            raise hours.HoursError(f"{args.file}: {exc}; nothing was imported") from None
    if not days:
        print("The file had no days.")
    else:
        print(f"Imported the hours of {args.branch} for {len(days)} day(s), {min(days)} to {max(days)}; "
              "the branch gets them at its next sync if its hours_managed_centrally = true.")
    return 0


def cmd_hours_set(args) -> int:
    from central import db, hours
    from device.schedule import WEEKDAYS

    _, engine = _open(args)
    if (args.clear or args.note) and args.date is None:
        raise hours.HoursError("--clear and --note go with --date: a weekday is closed with --periods closed")
    with db.writing(engine) as connection:
        if args.clear:
            had = hours.clear_day(connection, args.branch, args.date)
            print(f"{args.date} of {args.branch} follows its weekday again." if had else f"{args.date} of {args.branch} had no hours of its own.")
            return 0
        label = args.date.isoformat() if args.date else WEEKDAYS[args.weekday[0]]
        periods = hours.read_periods(args.periods, label)
        if args.date:
            hours.set_day(connection, args.branch, args.date, periods, note=args.note)
        else:
            for weekday in args.weekday:
                hours.set_weekday(connection, args.branch, weekday, periods)
    which = args.date.isoformat() if args.date else ", ".join(_WEEKDAYS[day] for day in args.weekday)
    print(f"Set the hours of {args.branch} for {which}; see them with: omaovi central hours-show {args.branch}")
    return 0


def cmd_hours_show(args) -> int:
    from central import db, hours
    from device.schedule import timeline_lines

    _, engine = _open(args)
    with db.reading(engine) as connection:
        schedule = hours.branch_schedule(connection, args.branch)
    if schedule is None:
        print(f"The central service keeps no hours for {args.branch}: the branch keeps its own.")
        return 0
    first = args.date or _now().astimezone(schedule.tz).date()
    print("\n".join(timeline_lines(schedule, first, args.days, schedule.tz.key)))
    return 0
