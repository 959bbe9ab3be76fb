"""`cts up` (= `make run`): the whole system on this machine, supervised, with a live view.

Migrates the database, ingests the bundled candles when the candles table is empty, starts the four services as
four processes (downstream first) and shows their health, the pipeline counts, the latest trades and the paper
portfolio until Ctrl-C (or --duration). If a service dies, the others are stopped and the exit code says which:
10 executor, 11 orchestrator, 12 bridge, 13 generator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

from common.config import Settings

HELP = "run the whole system locally (migrate, ingest, four services, live view); Ctrl-C stops it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-ui", action="store_true", help="print the services' log lines instead of the live view")
    parser.add_argument("--duration", type=float, default=0, help="stop by itself after this many seconds (0: never)")
    parser.add_argument(
        "--seconds-per-candle",
        type=float,
        default=None,
        help="replay pace: wall seconds per released hourly candle (default REPLAY_SECONDS_PER_CANDLE)",
    )
    parser.add_argument("--log-dir", type=Path, default=Path("var/logs"), help="where each service's log goes")


def run(args: argparse.Namespace) -> int:
    from cts.settings import settings_or_exit

    settings = settings_or_exit()
    return asyncio.run(_up(settings, args))


async def _prepare_database(settings: Settings) -> None:
    from sqlalchemy import func, select

    from common.database import create_engine
    from common.migrate import upgrade
    from common.tables import market_candles

    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            candles = (await conn.execute(select(func.count()).select_from(market_candles))).scalar_one()
    finally:
        await engine.dispose()
    if candles == 0 and settings.market_data_source == "replay":
        print("Ingesting the bundled candles (data/candles) ...", flush=True)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "cts", "ingest", "--source", "csv")
        if await proc.wait() != 0:
            raise SystemExit("cts up: ingesting the bundled candles failed")


async def _up(settings: Settings, args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from common.config import child_environment
    from common.database import create_engine
    from cts.health_probe import check_all, endpoints
    from cts.status_queries import read_snapshot
    from cts.status_view import render
    from cts.supervisor import Supervisor

    console = Console()
    await _prepare_database(settings)
    eps = endpoints(settings, host="127.0.0.1")
    overrides = {
        "SIGNAL_BRIDGE_ADDR": f"127.0.0.1:{settings.signal_bridge_port}",
        "TRADE_ORCHESTRATOR_ADDR": f"127.0.0.1:{settings.trade_orchestrator_port}",
        "TRADE_EXECUTOR_ADDR": f"127.0.0.1:{settings.trade_executor_port}",
        "SIGNAL_GENERATOR_ADDR": f"127.0.0.1:{settings.signal_generator_port}",
    }
    if args.seconds_per_candle is not None:
        overrides["REPLAY_SECONDS_PER_CANDLE"] = str(args.seconds_per_candle)

    def echo(name: str, line: str) -> None:
        console.print(Text.assemble((f"{name:>12} ", "bold"), line), highlight=False)

    supervisor = Supervisor(eps, child_environment(overrides), args.log_dir, echo=echo if args.no_ui else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    await supervisor.start()
    failure_task = asyncio.create_task(supervisor.wait_for_failure())
    stop_task = asyncio.create_task(stop.wait())
    waiters: set[asyncio.Task[object]] = {failure_task, stop_task}
    started = time.monotonic()
    engine = create_engine(settings.database_url)
    try:
        if args.no_ui:
            timeout = args.duration or None
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        else:
            with Live(console=console, refresh_per_second=2, screen=False) as live:
                done = set()
                while not done:
                    health = await check_all(eps, settings)
                    async with engine.connect() as conn:
                        snap = await read_snapshot(conn, starting_cash=settings.paper_starting_cash_usd)
                    live.update(render(snap, health))
                    done, _ = await asyncio.wait(waiters, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                    if args.duration and time.monotonic() - started >= args.duration:
                        break
    finally:
        for task in waiters:
            task.cancel()
        await engine.dispose()

    failure = supervisor.failed_child()
    codes = await supervisor.stop(grace=settings.shutdown_grace_seconds + 5)
    if failure is not None:
        console.print(f"[red]cts up: {failure.describe()}[/red]")
        for line in failure.last_lines[-8:]:
            console.print(f"  {failure.name}| {line}", markup=False, highlight=False)
        console.print(f"logs: {args.log_dir}/")
        return failure.exit_code
    unclean = {name: code for name, code in codes.items() if code not in (0, None)}
    with contextlib.suppress(Exception):
        await _final_summary(settings, console)
    if unclean:
        console.print(f"[red]cts up: services did not stop cleanly: {unclean}[/red]")
        return 1
    console.print("cts up: all services stopped cleanly")
    return 0


async def _final_summary(settings: Settings, console: object) -> None:
    from rich.console import Console

    from common.database import create_engine
    from cts.status_queries import read_snapshot
    from cts.status_view import render

    assert isinstance(console, Console)
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            snap = await read_snapshot(conn, starting_cash=settings.paper_starting_cash_usd)
        console.print(render(snap))
    finally:
        await engine.dispose()
