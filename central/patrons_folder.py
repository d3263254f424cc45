"""Patron exports dropped in a folder (``[patrons_folder]``), read by ``omaovi central serve`` on its schedule.

A library system without a usable API exports its patrons nightly as a CSV in the
format of docs/imports.md and copies it here. Each round the newest ``*.csv`` that
has not changed for a minute (so a file still being copied is never read half) is
read whole and replaces the central cards, and is then deleted: it holds card
numbers, which the central service never keeps. Older exports waiting beside it are
deleted unread, since the newest supersedes them. A refused export moves to
``refused/`` (the problems are logged) for someone to look at and delete. PIN
verifiers are kept as given, as ``omaovi central patrons-import`` keeps them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from central import db, patrons
from central.config import CentralSettings
from device.cards import load_consortium_key
from sync.patrons_csv import PatronCsvError, read_patrons

#: A file changed more recently than this may still be being written.
SETTLE = timedelta(minutes=1)


class FolderImportError(Exception):
    """An export that was refused (and moved to ``refused/``) or could not be read."""


def import_newest(settings: CentralSettings, engine, now: datetime) -> str | None:
    """Replace the cards from the newest settled export; what happened, or None when there was nothing to read."""
    folder = settings.patrons_folder.folder
    ready = sorted(
        (path for path in folder.glob("*.csv") if path.is_file() and now.timestamp() - path.stat().st_mtime >= SETTLE.total_seconds()),
        key=lambda path: (path.stat().st_mtime, path.name),
    )
    if not ready:
        return None
    newest, older = ready[-1], ready[:-1]
    key = load_consortium_key(settings.consortium_key_file)
    for path in older:
        path.unlink()
    try:
        rows = read_patrons(newest, key, now, keep_pin_verifiers=True)
        with db.writing(engine) as connection:
            changed, removed = patrons.replace(connection, rows, now)
    except (PatronCsvError, patrons.EmptySource) as exc:
        refused = newest.parent / "refused"
        refused.mkdir(exist_ok=True)
        newest.replace(refused / newest.name)
        raise FolderImportError(f"{newest.name} was refused and moved to refused/; nothing was changed:\n{exc}") from None
    except OSError as exc:
        raise FolderImportError(f"{newest.name} cannot be read: {exc.strerror}; nothing was changed") from None
    newest.unlink()
    superseded = f" ({len(older)} older export(s) deleted unread)" if older else ""
    return f"{newest.name}: {len(rows)} card(s), {changed} new or changed, {removed} removed{superseded}."
