"""`cts migrate`: bring DATABASE_URL to the latest schema (idempotent)."""

from __future__ import annotations

import argparse
import asyncio

from common.database import create_engine, describe_url
from common.migrate import current_revision, upgrade
from cts.settings import settings_or_exit

HELP = "apply database migrations (Alembic) to DATABASE_URL"


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
    revision = asyncio.run(_migrate(settings.database_url, args.revision))
    print(f"{describe_url(settings.database_url)} is at revision {revision}")
    return 0
