"""Opening the central database on SQLite or PostgreSQL, and bringing its schema up to date.

SQLite needs three things that PostgreSQL does by itself: WAL, so readers never wait
for a writer; foreign keys switched on; and ``BEGIN IMMEDIATE`` for transactions that
write, so two writers queue for the lock at the start instead of one of them failing
half-way (SQLite cannot upgrade a read lock while another connection writes).
"""

from __future__ import annotations

import logging
import secrets
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event, insert, select

from central import schema

MIGRATIONS = Path(__file__).with_name("migrations")
#: Seconds a SQLite writer waits for the lock before giving up.
SQLITE_BUSY_SECONDS = 15


def open_engine(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://…``)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_SECONDS})
        _sqlite_pragmas(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" below issues BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        writing = connection.get_execution_options().get("writing", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes: committed at the end, rolled back on an exception."""
    with engine.connect().execution_options(writing=True) as connection, connection.begin():
        yield connection


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A transaction that only reads, so that a multi-query answer sees one state."""
    with engine.connect() as connection, connection.begin():
        yield connection


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration, and give a new database its cursor key."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines (some at import) say nothing an admin needs
    from alembic import command
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect().execution_options(writing=True) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()
    with writing(engine) as connection:
        if connection.execute(select(schema.service.c.id)).first() is None:
            connection.execute(insert(schema.service).values(
                id=1, cursor_key=secrets.token_hex(32), created=datetime.now(timezone.utc)))


def cursor_key(connection: Connection) -> bytes:
    return bytes.fromhex(connection.execute(select(schema.service.c.cursor_key)).scalar_one())
