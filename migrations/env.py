"""Alembic environment. Run through ``cts migrate`` (common.migrate), which passes a live connection."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from common.tables import metadata

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `cts migrate` (common.migrate.upgrade), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
