"""The central service and the test double behind one face, so the conformance tests run on both.

Each side is steered the way its operator would: the real service through its own
modules on its own database (what the pages and the console do), the double through
its plain attributes.
"""

from __future__ import annotations

import json
import shutil
import threading
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select

from central import bookings, branches, changelog, db, patrons, schema, tokens
from central.config import CentralSettings, ProtocolSettings, ServerSettings
from central.serve import Background, make_server
from device.policy import Patron
from tests.central_server import CentralServer

BRANCH = "kallio"
OTHER_BRANCH = "toolo"
RESOURCE = "smartblock-1"
KEY_TEXT = "omaovi-test-vector-key-000000000"


def card(n: int) -> str:
    """The n-th test card's card_key."""
    return f"{n:064x}"


def all_at_once(count: int, attempt, expected: type[Exception]) -> tuple[list, list[Exception], list[str]]:
    """Call ``attempt(n)`` for n in range(count), each in its own thread, all released at one moment.

    Returns what the calls returned, the ``expected`` exceptions they raised, and any
    other exception as text (anything else would be a bug: the test says which)."""
    start = threading.Barrier(count)
    won: list = []
    refused: list[Exception] = []
    failed: list[str] = []

    def run(n: int) -> None:
        start.wait()
        try:
            won.append(attempt(n))
        except expected as exc:
            refused.append(exc)
        except Exception as exc:  # anything else would be a bug: say which
            failed.append(repr(exc))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return won, refused, failed


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _patron(item: dict) -> Patron:
    return Patron(
        card_key=item["card_key"], self_service=item["self_service"], blocked_reason=item["blocked_reason"],
        valid_until=_date(item["valid_until"]), age_ok_from=_date(item["age_ok_from"]), staff=item["staff"],
        pin_verifier=item.get("pin_verifier"),
    )


def _date(text):
    from datetime import date

    return date.fromisoformat(text) if text else None


class RealCentral:
    """``omaovi central serve`` on a free port in this process, over ``database_url``."""

    name = "central"

    def __init__(self, tmp_path: Path, database_url: str, page_size: int = 2, max_concurrent: int = 32):
        key_file = tmp_path / "consortium.key"
        key_file.write_text(KEY_TEXT)
        self.settings = CentralSettings(
            tmp_path / "central.toml", database_url, key_file, ServerSettings(port=0),
            ProtocolSettings(page_size=page_size, max_concurrent=max_concurrent),
        )
        self.server, self.engine = make_server(self.settings, port=0)
        self.background = Background(self.server)
        with db.writing(self.engine) as connection:
            for branch in (BRANCH, OTHER_BRANCH):
                branches.put_branch(connection, branch, branch.title())
                branches.put_booth(connection, branch, RESOURCE, "Work booth")
            self.token = tokens.add(connection, BRANCH, "pi", _now())
            self.other_token = tokens.add(connection, OTHER_BRANCH, "pi", _now())
        self.branch = BRANCH

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.effective_port}"

    def __enter__(self) -> "RealCentral":
        self.background.start()
        return self

    def __exit__(self, *exc) -> None:
        self.background.close()
        self.engine.dispose()

    # -- steering ----------------------------------------------------------------
    def put_patrons(self, *items: dict) -> None:
        with db.writing(self.engine) as connection:
            patrons.put(connection, [_patron(item) for item in items if not item.get("deleted")], _now())
            patrons.remove(connection, [item["card_key"] for item in items if item.get("deleted")], _now())

    def book(self, card_key: str, begin: datetime, end: datetime) -> str:
        with db.writing(self.engine) as connection:
            return bookings.book(connection, BRANCH, RESOURCE, card_key, begin, end, _now())

    def cancel(self, reference: str) -> None:
        with db.writing(self.engine) as connection:
            bookings.cancel(connection, reference, _now())

    def forget_cursors(self) -> None:
        """Compact the change logs down to their newest row, as an hourly compaction far in the future would."""
        with db.writing(self.engine) as connection:
            for stream in changelog.LOGS:
                changelog.compact(connection, stream, datetime.max.replace(tzinfo=timezone.utc))

    def backup(self) -> object:
        """A copy of the whole database, as a nightly backup would take."""
        if self.engine.dialect.name == "sqlite":
            path = Path(self.engine.url.database)
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            copy = path.with_suffix(".backup")
            shutil.copy(path, copy)
            return copy
        return self._pg_copy(self.engine.url.database, f"{self.engine.url.database}_backup")

    def restore(self, backup: object) -> None:
        """Put the backup back in place of the live database, as an operator would after a disk failure."""
        self.engine.dispose()
        if self.engine.dialect.name == "sqlite":
            path = Path(self.engine.url.database)
            for stale in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                stale.unlink(missing_ok=True)
            shutil.copy(backup, path)
        else:
            live = self.engine.url.database
            self._admin(f'DROP DATABASE "{live}" WITH (FORCE)')
            self._pg_copy(backup, live)

    def stored_events(self) -> dict[str, dict]:
        with db.reading(self.engine) as connection:
            rows = connection.execute(select(schema.events).order_by(schema.events.c.branch_id, schema.events.c.seq)).all()
        return {row.uuid: row._asdict() | {"detail": json.loads(row.detail) if row.detail else None} for row in rows}

    def _pg_copy(self, source: str, target: str) -> str:
        self.engine.dispose()
        self._admin(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')
        return target

    def _admin(self, statement: str) -> None:
        import psycopg

        url = self.engine.url
        with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname="postgres", autocommit=True) as connection:
            connection.execute(statement)


class DoubleCentral:
    """tests/central_server.py behind the same face."""

    name = "double"

    def __init__(self, page_size: int = 2):
        self.double = CentralServer(branch=BRANCH, page_size=page_size)
        self.token = self.double.token
        self.branch = BRANCH
        self.other_token = "someone-elses-token"
        self._ids = 0

    @property
    def url(self) -> str:
        return self.double.url

    def __enter__(self) -> "DoubleCentral":
        self.double.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.double.__exit__(*exc)

    def put_patrons(self, *items: dict) -> None:
        self.double.patrons.put(*items)

    def book(self, card_key: str, begin: datetime, end: datetime) -> str:
        self._ids += 1
        reference = f"r-{self._ids}"
        self.double.reservations.put({"id": reference, "resource": RESOURCE, "card_key": card_key,
                                      "begin": begin.isoformat(), "end": end.isoformat(), "state": "confirmed"})
        return reference

    def cancel(self, reference: str) -> None:
        current = next(item for item in reversed(self.double.reservations.log) if item["id"] == reference)
        self.double.reservations.put(current | {"state": "cancelled"})

    def forget_cursors(self) -> None:
        self.double.patrons.forget_cursors()
        self.double.reservations.forget_cursors()

    def backup(self) -> object:
        return self.double.backup()

    def restore(self, backup: object) -> None:
        self.double.restore(backup)

    def stored_events(self) -> dict[str, dict]:
        return dict(self.double.events)
