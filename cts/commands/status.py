"""`cts status`: the system summary from any database (SQLite or MySQL), plus service health."""

from __future__ import annotations

import argparse
import asyncio

from common.config import Settings

HELP = "show health, pipeline counts, latest trades, paper portfolio and table sizes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-health", action="store_true", help="do not contact the services, database only")


async def _status(settings: Settings, with_health: bool) -> None:
    from rich.console import Console

    from common.database import create_engine
    from cts.health_probe import check_all, endpoints
    from cts.status_queries import read_snapshot
    from cts.status_view import render

    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            snap = await read_snapshot(conn, starting_cash=settings.paper_starting_cash_usd)
    finally:
        await engine.dispose()
    health = await check_all(endpoints(settings), settings) if with_health else None
    Console().print(render(snap, health, tables=True))


def run(args: argparse.Namespace) -> int:
    from cts.settings import settings_or_exit

    settings = settings_or_exit()
    asyncio.run(_status(settings, not args.no_health))
    return 0
