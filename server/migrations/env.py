"""Alembic environment: run by :mod:`server.migrations.run` on a connection it passes in; no alembic.ini, no URL."""

from __future__ import annotations

from alembic import context

from server.migrations.metadata import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
