"""`cts migrate`: bring DATABASE_URL to the latest schema (idempotent). A database created by the original
deployment guide's DDL is adopted (migrations/adopt.py); incompatible tables change nothing, name every difference
and exit 1."""

from __future__ import annotations

import argparse
import asyncio
import sys

from common.database import create_engine, describe_url
from common.migrate import SchemaIncompatible, current_revision, upgrade
from cts.settings import settings_or_exit

HELP = "apply database migrations (Alembic) to DATABASE_URL, adopting the deployment guide's existing tables"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--revision", default="head", help="target revision (default: head)")


async def _migrate(database_url: str, revision: str) -> str | None:
    engine = create_engine(database_url)
    try:
        await upgrade(engine, revision)
        return await current_revision(engine)
    finally:
        await engine.dispose()


def run(args: argparse.Namespace) -> int:
    settings = settings_or_exit()
    try:
        revision = asyncio.run(_migrate(settings.database_url, args.revision))
    except SchemaIncompatible as exc:
        print(f"cts migrate: {describe_url(settings.database_url)}: {exc}", file=sys.stderr)
        return 1
    print(f"{describe_url(settings.database_url)} is at revision {revision}")
    return 0
