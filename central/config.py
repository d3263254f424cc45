"""``central.toml``: where the central service keeps its data and how it serves.

Checked whole, as the branch config is: every problem is listed with its key, the
value and what is allowed, and an unknown key is an error (a misspelt key silently
ignored is a service set up wrong).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from central.koha import KohaRules
from device.config import ConfigError, Problem, _base_url, _list_of, _read, _Section, _text, parse_duration

DEFAULT_PATH = "/etc/omaovi/central.toml"


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8090
    threads: int = 8


@dataclass(frozen=True)
class ProtocolSettings:
    #: Patrons per page: 10 000 is about 2 MB, well under a branch's 50 MB answer cap.
    page_size: int = 5000
    #: Protocol requests served at once per process; the rest are told to come back (503).
    max_concurrent: int = 32
    #: Seconds in the Retry-After of that 503.
    retry_after: int = 10
    #: Days the change logs are kept; a branch away longer takes a full snapshot (410).
    keep_changes_days: int = 30


@dataclass(frozen=True)
class KohaSettings:
    """``[koha]``: where the patrons' permissions come from, when the consortium runs Koha."""

    base_url: str
    client_id: str
    client_secret_file: Path
    rules: KohaRules
    per_page: int = 500
    #: How often ``omaovi central serve`` syncs; None: only ``omaovi central patrons-sync-koha``.
    interval: timedelta | None = None


#: A sync reads every patron, so more often than this only loads the library system.
MIN_SYNC_INTERVAL = timedelta(minutes=5)


@dataclass(frozen=True)
class PatronsFolderSettings:
    """``[patrons_folder]``: the library system's patron exports (CSV) land here, and serve reads the newest."""

    folder: Path
    interval: timedelta


@dataclass(frozen=True)
class CentralSettings:
    path: Path
    database_url: str
    consortium_key_file: Path
    server: ServerSettings
    protocol: ProtocolSettings
    koha: KohaSettings | None = None
    patrons_folder: PatronsFolderSettings | None = None


def load(path: str | Path = DEFAULT_PATH) -> CentralSettings:
    path = Path(path)
    data = _read(path)
    problems: list[Problem] = []
    top = _Section(data, "", problems)
    base = path.resolve().parent
    database = top.get("database", lambda v: _database_url(v, base), "an SQLAlchemy URL: sqlite:///central.db or "
                       "postgresql+psycopg://omaovi@/omaovi (a relative SQLite path is relative to this file)",
                       f"sqlite:///{base / 'central.db'}")
    key_file = top.text("consortium_key_file")
    server = _table(top, "server", problems)
    server_settings = ServerSettings(
        host=server.text("host", ServerSettings.host),
        port=server.integer("port", 0, 65535, ServerSettings.port),  # 0: any free port (tests)
        threads=server.integer("threads", 1, 64, ServerSettings.threads),
    )
    server.finish()
    protocol = _table(top, "protocol", problems)
    protocol_settings = ProtocolSettings(
        page_size=protocol.integer("page_size", 10, 50_000, ProtocolSettings.page_size),
        max_concurrent=protocol.integer("max_concurrent", 1, 1000, ProtocolSettings.max_concurrent),
        retry_after=protocol.integer("retry_after", 1, 3600, ProtocolSettings.retry_after),
        keep_changes_days=protocol.integer("keep_changes_days", 1, 3650, ProtocolSettings.keep_changes_days),
    )
    protocol.finish()
    koha_settings = _koha(_table(top, "koha", problems), base) if "koha" in data else None
    folder_settings = _patrons_folder(_table(top, "patrons_folder", problems), base) if "patrons_folder" in data else None
    if folder_settings and koha_settings and koha_settings.interval:
        # Each would remove the cards the other brought: one source keeps the cards whole.
        problems.append(Problem("patrons_folder", "(table)", "leave it out while [koha] has an interval: one source of patrons"))
    top.finish()
    if problems:
        raise ConfigError(path, problems)
    return CentralSettings(path, database, base / key_file, server_settings, protocol_settings, koha_settings,
                           folder_settings)


def _patrons_folder(section: _Section, base: Path) -> PatronsFolderSettings:
    settings = PatronsFolderSettings(
        folder=base / (section.text("folder") or ""),
        interval=section.get("interval", _sync_interval, "must be a time such as \"15m\" or \"1h\", at least "
                             f"{MIN_SYNC_INTERVAL.seconds // 60}m", timedelta(minutes=15)),
    )
    section.finish()
    return settings


def _koha(section: _Section, base: Path) -> KohaSettings:
    codes = "must be a list of Koha patron category codes, such as [\"STAFF\"]"
    settings = KohaSettings(
        base_url=section.get("base_url", _base_url, "must be the http:// or https:// address of Koha's staff interface, "
                             "such as \"https://koha-staff.example.fi\""),
        client_id=section.text("client_id"),
        client_secret_file=base / (section.text("client_secret_file") or ""),
        rules=KohaRules(
            self_service_attribute=section.text("self_service_attribute"),
            self_service_accepted=section.get(
                "self_service_accepted", _some_texts, "must be a list of the attribute's values that mean the terms "
                "are accepted, such as [\"1\"]") or (),
            staff_categories=frozenset(section.get("staff_categories", lambda v: _list_of(v, _text), codes, ()) or ()),
            allowed_categories=frozenset(section.get("allowed_categories", lambda v: _list_of(v, _text), codes, ()) or ()),
            minimum_age=section.integer("minimum_age", 1, 120),
        ),
        per_page=section.integer("per_page", 1, 5000, KohaSettings.per_page),
        interval=section.get("interval", _sync_interval, "must be a time such as \"30m\", \"6h\" or \"1d\", at least "
                             f"{MIN_SYNC_INTERVAL.seconds // 60}m; leave it out to sync only from the console", None),
    )
    section.finish()
    return settings


def _some_texts(value) -> tuple[str, ...]:
    texts = _list_of(value, _text)
    if not texts:
        raise ValueError("empty")
    return texts


def _sync_interval(value) -> timedelta:
    interval = parse_duration(value)
    if interval < MIN_SYNC_INTERVAL:
        raise ValueError("too often")
    return interval


def _table(top: _Section, name: str, problems: list[Problem]) -> _Section:
    table = top.get(name, _dict, "must be a table", {})
    return _Section(table or {}, f"{name}.", problems)


def _dict(value) -> dict:
    if not isinstance(value, dict):
        raise TypeError("not a table")
    return value


def _database_url(value, base: Path) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError("not a URL") from None
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError("an SQLite database needs a file")
        return str(url.set(database=str(base / url.database)))
    if url.get_backend_name() != "postgresql":
        raise ValueError("only SQLite and PostgreSQL")
    return value
