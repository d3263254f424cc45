"""The demo's consortium: ``omaovi central serve`` on SQLite beside the demo branch, and the branch's sync.

Everything is the production path: the central service on its own database, the
branch's ``SyncRunner`` talking HTTP to it on 127.0.0.1, the device deciding from what
sync wrote. Only the timing is the demo's: a booking made at the console is synced at
once instead of at the next round, so the booth opens as soon as the console says so.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TextIO

from sqlalchemy import select

from central import bookings, branches, db, patrons, schema, tokens
from central.config import CentralSettings, ProtocolSettings, ServerSettings
from central.serve import Background, make_server
from device.cards import card_key, load_consortium_key
from device.config import CentralConfig, Config
from device.policy import Patron
from device.store import Store

DEMO_TOKEN_NAME = "demo branch"
#: Seconds between the demo branch's sync rounds when nothing is booked at the console.
SYNC_INTERVAL = 30


class DemoCentral:
    """The central service and the demo branch's sync, each in a thread of the demo process."""

    def __init__(self, directory: Path, cfg: Config, port: int):
        self.dir = directory / "central"
        self.dir.mkdir(exist_ok=True)
        self.cfg = cfg
        self.settings = CentralSettings(
            self.dir / "central.toml", f"sqlite:///{self.dir / 'central.db'}", cfg.consortium_key_file,
            ServerSettings(host="127.0.0.1", port=port, threads=4), ProtocolSettings(),
        )
        server, self.engine = make_server(self.settings)
        self.background = Background(server, "demo-central")
        self.url = f"http://127.0.0.1:{server.effective_port}"
        self._wake = threading.Event()
        self._synced = threading.Condition()
        self._rounds = 0
        self._stop = threading.Event()

    def start(self, demo_patrons: list[Patron], holder: str, now: datetime) -> None:
        """Serve, and sync the branch once; ``holder``'s card gets the seeded booth booking if it has none now."""
        token = self._prepare(demo_patrons, now)
        central = CentralConfig(base_url=self.url, token_file=self.dir / "branch.token", timeout=5, interval=SYNC_INTERVAL)
        central.token_file.write_text(token + "\n", encoding="utf-8")
        central.token_file.chmod(0o600)
        self.background.start()
        threading.Thread(target=self._sync_loop, args=(central,), name="demo-sync", daemon=True).start()
        try:
            if not self._has_booking(holder, now):
                self.book(holder, 2, now)
                return
        except bookings.SlotTaken:
            pass  # a booking made at the console last time holds the booth: it stays
        self.sync_now()

    def book(self, number: str, hours: float, now: datetime) -> tuple[str, datetime, datetime]:
        """Book the booth for ``number`` from this minute, sync, and return (reference, begin, end).

        From this very minute, not the half hour before: a booking that began earlier
        would count as unused (a no-show) sooner than a patron could walk to the booth."""
        begin = now.replace(second=0, microsecond=0)
        end = begin + timedelta(hours=hours)
        key = card_key(load_consortium_key(self.cfg.consortium_key_file), number)
        try:
            with db.writing(self.engine) as connection:
                reference = bookings.book(connection, self.cfg.branch, self._booth().resource, key, begin, end, now)
        except bookings.SlotTaken:
            raise bookings.SlotTaken(f"the booth is taken then: {self._holding(begin, end)}") from None
        self.sync_now()
        return reference, begin, end

    def _holding(self, begin: datetime, end: datetime) -> str:
        """The bookings in the way, with their references, so the demo user can cancel one."""
        table = schema.reservations
        with db.reading(self.engine) as connection:
            rows = connection.execute(select(table).where(
                table.c.branch_id == self.cfg.branch, table.c.state == "confirmed", table.c.begin < end, table.c.end > begin)).all()
        return "; ".join(f"{row.begin.astimezone(self.cfg.tz):%H.%M}–{row.end.astimezone(self.cfg.tz):%H.%M} "
                         f"(reference {row.id}: 'cancel {row.id}' frees it)" for row in rows)

    def cancel(self, reference: str, now: datetime) -> None:
        with db.writing(self.engine) as connection:
            bookings.cancel(connection, reference.upper(), now)
        self.sync_now()

    def sync_now(self, timeout: float = 30) -> None:
        """Wake the branch's sync and wait until it has finished a whole round."""
        with self._synced:
            target = self._rounds + 1
            self._wake.set()
            self._synced.wait_for(lambda: self._rounds >= target, timeout)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self.background.close()
        self.engine.dispose()

    def _prepare(self, demo_patrons: list[Patron], now: datetime) -> str:
        """The demo branch, its booth, its cards and a fresh token (the old ones revoked), and the seeded booking."""
        booth = self._booth()
        with db.writing(self.engine) as connection:
            branches.put_branch(connection, self.cfg.branch, "Demo branch")
            branches.put_booth(connection, self.cfg.branch, booth.resource, booth.name)
            patrons.put(connection, demo_patrons, now)
            for row in tokens.listing(connection):
                if row.branch_id == self.cfg.branch and row.name == DEMO_TOKEN_NAME and row.revoked is None:
                    tokens.revoke(connection, self.cfg.branch, DEMO_TOKEN_NAME, now)
            return tokens.add(connection, self.cfg.branch, DEMO_TOKEN_NAME, now)

    def _has_booking(self, number: str, now: datetime) -> bool:
        key = card_key(load_consortium_key(self.cfg.consortium_key_file), number)
        table = schema.reservations
        with db.reading(self.engine) as connection:
            return connection.execute(select(table.c.id).where(
                table.c.card_key == key, table.c.state == "confirmed", table.c.begin <= now, table.c.end > now)).first() is not None

    def _booth(self):
        return next(door for door in self.cfg.doors if door.kind == "booth")

    def _sync_loop(self, central: CentralConfig) -> None:
        from sync.central import SyncRunner

        store = Store(self.cfg.database)
        runner = SyncRunner(store, self.cfg, central)
        try:
            while not self._stop.is_set():
                runner.run_once()
                with self._synced:
                    self._rounds += 1
                    self._synced.notify_all()
                self._wake.wait(SYNC_INTERVAL)
                self._wake.clear()
        finally:
            store.close()
