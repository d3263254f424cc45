"""Patron exports dropped in a folder, read by the central service on its schedule."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from central import config, db, schema
from central.patrons_folder import FolderImportError, import_newest
from central.serve import start_background
from device.cards import card_key
from device.config import ConfigError
from device.pins import make_verifier

KEY_TEXT = "omaovi-test-vector-key-000000000"
NOW = datetime(2031, 3, 15, 10, 0, tzinfo=timezone.utc)
HEADER = "card_number,self_service,age_ok_from,pin_verifier\n"


def key(number: str) -> str:
    return card_key(KEY_TEXT.encode(), number)


class Folder:
    def __init__(self, tmp_path: Path, extra: str = ""):
        (tmp_path / "consortium.key").write_text(KEY_TEXT)
        self.incoming = tmp_path / "incoming"
        self.incoming.mkdir()
        path = tmp_path / "central.toml"
        path.write_text(f'consortium_key_file = "consortium.key"\n[patrons_folder]\nfolder = "incoming"\n{extra}\n')
        self.settings = config.load(path)
        self.engine = db.open_engine(self.settings.database_url)
        db.migrate(self.engine)

    def drop(self, name: str, text: str, age: timedelta, now: datetime = NOW) -> Path:
        path = self.incoming / name
        path.write_text(text)
        moment = (now - age).timestamp()
        os.utime(path, (moment, moment))
        return path

    def cards(self) -> dict[str, str | None]:
        with db.reading(self.engine) as connection:
            return dict(connection.execute(select(schema.patrons.c.card_key, schema.patrons.c.pin_verifier)).all())


@pytest.fixture
def folder(tmp_path):
    f = Folder(tmp_path)
    yield f
    f.engine.dispose()


def test_the_newest_settled_export_replaces_the_cards_and_is_deleted(folder):
    verifier = make_verifier("2468", "Zx9Qsalt")
    old = folder.drop("monday.csv", HEADER + "10000009,1,2000-01-01,\n", timedelta(days=1))
    newest = folder.drop("tuesday.csv", HEADER + f"10000001,1,2000-01-01,{verifier}\n10000002,0,,\n", timedelta(minutes=5))
    writing = folder.drop("wednesday.csv", HEADER + "10000003,1,2000-01-01,\n", timedelta(seconds=10))

    said = import_newest(folder.settings, folder.engine, NOW)

    assert folder.cards() == {key("10000001"): verifier, key("10000002"): None}
    assert "tuesday.csv: 2 card(s), 2 new or changed, 0 removed (1 older export(s) deleted unread)." == said
    assert not old.exists() and not newest.exists() and writing.exists()  # a file still being written waits

    assert "wednesday.csv: 1 card(s), 1 new or changed, 2 removed" in import_newest(folder.settings, folder.engine, NOW + timedelta(minutes=2))
    assert set(folder.cards()) == {key("10000003")}
    assert import_newest(folder.settings, folder.engine, NOW + timedelta(minutes=3)) is None


@pytest.mark.parametrize("text, expected", [
    (HEADER + "10000001,maybe,,\n", "line 2, self_service: 'maybe' is not a yes/no value"),
    (HEADER, "no cards at all, so the central cards were kept"),
], ids=["a bad row", "no cards at all"])
def test_a_refused_export_changes_nothing_and_moves_aside(folder, text, expected):
    folder.drop("first.csv", HEADER + "10000005,1,2000-01-01,\n", timedelta(minutes=5))
    import_newest(folder.settings, folder.engine, NOW)
    folder.drop("second.csv", text, timedelta(minutes=5))

    with pytest.raises(FolderImportError) as refused:
        import_newest(folder.settings, folder.engine, NOW + timedelta(minutes=1))

    assert expected in str(refused.value) and "10000001" not in str(refused.value)
    assert set(folder.cards()) == {key("10000005")}
    assert (folder.incoming / "refused" / "second.csv").exists() and not (folder.incoming / "second.csv").exists()


def test_serve_reads_the_folder_on_its_schedule(tmp_path):
    folder = Folder(tmp_path, 'interval = "15m"')
    folder.drop("patrons.csv", HEADER + "10000001,1,2000-01-01,\n", timedelta(minutes=5), datetime.now(timezone.utc))
    stopping = threading.Event()
    jobs = start_background(folder.engine, folder.settings, stopping)
    try:
        deadline = time.monotonic() + 60
        while not folder.cards() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert set(folder.cards()) == {key("10000001")}
    finally:
        stopping.set()
        for job in jobs:
            job.join(timeout=30)
        folder.engine.dispose()
    assert [job.name for job in jobs] == ["compaction", "patrons-folder"]


def test_a_folder_and_a_scheduled_koha_sync_are_not_both_allowed(tmp_path):
    (tmp_path / "central.toml").write_text(
        'consortium_key_file = "k"\n[patrons_folder]\nfolder = "incoming"\ninterval = "1m"\n[koha]\nbase_url = "https://koha"\nclient_id = "a"\n'
        'client_secret_file = "s"\nself_service_attribute = "X"\nself_service_accepted = ["1"]\nminimum_age = 15\n'
        'interval = "1h"\n')
    with pytest.raises(ConfigError) as error:
        config.load(tmp_path / "central.toml")
    assert "one source of patrons" in str(error.value) and 'patrons_folder.interval = "1m": must be a time' in str(error.value)
