"""``omaovi central …``: running the central service and looking after its data from the console.

Each handler opens the database named in ``central.toml``, does one thing in one
transaction and says what it did. SQLAlchemy is imported only when a central
command runs, so the branch's commands do not pay for it.
"""

from __future__ import annotations

import argparse
import os
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
    _config_arg(p)
    p = central.add_parser("cancel", help="cancel a booking by its reference")
    p.add_argument("reference")
    _config_arg(p)
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
        branches.put_booth(connection, args.branch, args.resource, args.name)
    print(f"Booth {args.resource} ({args.name}) of branch {args.branch} can be booked.")
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
    from device.cards import card_key, load_consortium_key

    settings, engine = _open(args)
    key = card_key(load_consortium_key(settings.consortium_key_file), args.card)
    end = args.start + timedelta(hours=args.hours)
    with db.writing(engine) as connection:
        reference = bookings.book(connection, args.branch, args.resource, key, args.start, end, _now())
    print(f"Booked {args.resource} of {args.branch} {args.start:%d.%m.%Y %H.%M}–{end:%H.%M}: reference {reference}.")
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
