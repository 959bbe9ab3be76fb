"""Dialect helpers shared by the repositories."""

from __future__ import annotations

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
