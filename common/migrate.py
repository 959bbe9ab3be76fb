"""Apply the Alembic migrations in migrations/ to a database (``cts migrate``, ``make run``, tests).

A database without Alembic history that already holds the deployment guide's ``trading_signals`` /
``trade_recommendations`` is adopted (migrations/adopt.py): checked first, then brought to the project's schema
without losing or changing a row. Incompatible tables raise :class:`SchemaIncompatible` and nothing changes."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from migrations import adopt
from migrations.adopt import SchemaIncompatible as SchemaIncompatible


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    if _current(connection) is None:
        # No history yet: a fresh database, or one created by the deployment guide's DDL. Check the guide's tables
        # before Alembic writes anything (MySQL DDL is not transactional): incompatible -> nothing changes.
        adopt.require_compatible(connection)
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
