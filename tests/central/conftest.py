"""Fixtures for the central service: a private PostgreSQL server, and a central service on each engine."""

from __future__ import annotations

import pytest

from central import branches, db
from postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """An empty database on each engine the central service supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def engine(database_url):
    """A migrated database on each engine, with branch kallio and its booths booth-1 and booth-2."""
    engine = db.open_engine(database_url)
    db.migrate(engine)
    with db.writing(engine) as connection:
        branches.put_branch(connection, "kallio", "Kallio")
        branches.put_booth(connection, "kallio", "booth-1", "Work booth")
        branches.put_booth(connection, "kallio", "booth-2", "Second booth")
    yield engine
    engine.dispose()
