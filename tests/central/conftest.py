"""Fixtures for the central service: a private PostgreSQL server, and a central service on each engine."""

from __future__ import annotations

import pytest

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
