"""Alembic's entry point for the central database; the connection comes from central.db.migrate."""

from alembic import context

from central.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
