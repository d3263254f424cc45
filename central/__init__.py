"""omaovi central: the consortium's service that the branches' ``omaovi sync`` talks to.

It serves protocol v1 (docs/central-protocol.md): patron permissions, booth bookings
and hours go down to the branches, door events come up. The branch stays the
authority for its own door, deciding every tap from its own copy, so this service may
be down for hours without anyone being locked out.

Storage is SQLAlchemy Core with Alembic migrations, so one schema runs on SQLite (the
embedded default: the demo, one library) and on PostgreSQL (a consortium).
"""
