"""Dialect helpers shared by the repositories."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


def insert_ignore(conn: AsyncConnection, table: Table) -> Any:
    """INSERT that silently skips rows violating a primary or unique key, on SQLite and MySQL alike (MySQL: a
    no-op ON DUPLICATE KEY UPDATE, which unlike INSERT IGNORE raises no warning and ignores no other error)."""
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    statement = mysql.insert(table)
    key = next(iter(table.primary_key.columns))
    return statement.on_duplicate_key_update({key.name: table.c[key.name]})


def upsert(dialect_name: str, table: Table, update_columns: Sequence[str]) -> Any:
    """INSERT that, for a row whose primary key exists, sets ``update_columns`` to the inserted values instead
    (MySQL: ON DUPLICATE KEY UPDATE; SQLite: ON CONFLICT DO UPDATE); executed with a list of rows it writes them
    all in one statement. SQLAlchemy does not cache these statements' compilation."""
    if dialect_name == "sqlite":
        lite = sqlite.insert(table)
        return lite.on_conflict_do_update(
            index_elements=list(table.primary_key.columns), set_={c: lite.excluded[c] for c in update_columns}
        )
    my = mysql.insert(table)
    return my.on_duplicate_key_update({c: my.inserted[c] for c in update_columns})
