"""`cts up` (= `make run`): the whole system on this machine, supervised, with a live view.

Starts a fresh embedded database (unless --keep), migrates it, ingests real candles (cts.candle_data) when the
candles table is empty, starts the four services as four processes (downstream first) and shows the live view
(cts.status_view) until Ctrl-C (or --duration). If a service dies, the others are stopped and the exit code says
which: 10 executor, 11 orchestrator, 12 bridge, 13 generator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
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
    parser.add_argument(
        "--keep", action="store_true", help="continue with the existing database instead of a fresh replay"
    )
    parser.add_argument("--screenshot", type=Path, default=None, help="save the live view as SVG when stopping")
    parser.add_argument("--log-dir", type=Path, default=Path("var/logs"), help="where each service's log goes")


def run(args: argparse.Namespace) -> int:
    from cts.settings import settings_or_exit

    settings = settings_or_exit()
    return asyncio.run(_up(settings, args))


def _fresh_sqlite_file(settings: Settings) -> Path | None:
    """The embedded SQLite file when it lives under var/ (a fresh replay starts by removing it), else None."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if not url.drivername.startswith("sqlite") or not url.database:
        return None
    path = Path(url.database)
    return path if Path("var").resolve() in path.resolve().parents else None


def _start_fresh(settings: Settings) -> None:
    path = _fresh_sqlite_file(settings)
    if path is None:
        return
    for leftover in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        leftover.unlink(missing_ok=True)


async def _candle_directory(settings: Settings) -> Path:
    """The candles to replay (see cts.candle_data); downloads recent ones from Coinbase when there are none."""
    from rich.progress import Progress

    from cts import candle_data
    from cts.candle_data import CandleDataError, download_recent_candles, find_candle_directory, no_candles_message
    from generator_svc.market_data import MarketDataError

    source = find_candle_directory(settings.candles_dir)
    if source is not None:
        return source.directory
    shared, downloaded = candle_data.SHARED_CANDLES_DIR, candle_data.DOWNLOADED_CANDLES_DIR
    print(f"No candles in {shared}: downloading recent candles from Coinbase ...", flush=True)
    try:
        with Progress() as progress:
            task = progress.add_task("candles", total=None)

            def tick(symbol: str, done: int, total: int) -> None:
                progress.update(task, completed=done, total=total, description=symbol)

            await download_recent_candles(
                settings.coinbase_api_base_url,
                downloaded,
                universe_size=settings.universe_size,
                progress=tick,
            )
    except MarketDataError as exc:
        raise CandleDataError(no_candles_message(shared, f"the download failed ({exc})")) from None
    return downloaded


async def _prepare_database(settings: Settings, *, keep: bool) -> None:
    from sqlalchemy import func, select

    from common.database import create_engine
    from common.migrate import upgrade
    from common.tables import market_candles

    if not keep:
        _start_fresh(settings)
    # A fresh database is migrated every run: Alembic's step-by-step INFO lines are noise here (`cts migrate`
    # still shows them).
    logging.getLogger("alembic").setLevel(logging.WARNING)
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            candles = (await conn.execute(select(func.count()).select_from(market_candles))).scalar_one()
    finally:
        await engine.dispose()
    if candles == 0 and settings.market_data_source == "replay":
        directory = await _candle_directory(settings)
        print(f"Ingesting the candles of {directory} ...", flush=True)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cts", "ingest", "--source", "csv", "--directory", str(directory)
        )
        if await proc.wait() != 0:
            raise SystemExit(f"cts up: ingesting the candles of {directory} failed")


async def _up(settings: Settings, args: argparse.Namespace) -> int:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from common.config import child_environment
    from common.database import create_engine
    from common.services import SERVICES
    from cts.health_probe import check_all, endpoints
    from cts.status_queries import read_snapshot
    from cts.status_view import TradeCap, render_dashboard
    from cts.supervisor import Supervisor

    console = Console()
    await _prepare_database(settings, keep=args.keep)
    eps = endpoints(settings, host="127.0.0.1")
    overrides = {f"{info.env_prefix}_ADDR": f"127.0.0.1:{info.port(settings)}" for info in SERVICES}
    if args.seconds_per_candle is not None:
        overrides["REPLAY_SECONDS_PER_CANDLE"] = str(args.seconds_per_candle)

    def echo(name: str, line: str) -> None:
        # Plain writes: a log line is never wrapped or cut (a terminal wraps it, a pipe gets it whole).
        sys.stdout.write(f"{name:>12} {line}\n")
        sys.stdout.flush()

    supervisor = Supervisor(eps, child_environment(overrides), args.log_dir, echo=echo if args.no_ui else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGHUP too: closing the terminal stops the services instead of leaving them running without a supervisor.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)

    await supervisor.start()
    failure_task = asyncio.create_task(supervisor.wait_for_failure())
    stop_task = asyncio.create_task(stop.wait())
    waiters: set[asyncio.Task[object]] = {failure_task, stop_task}
    started = time.monotonic()
    engine = create_engine(settings.database_url)
    cap = TradeCap(settings.max_trades_per_window, settings.trade_cap_window_seconds)

    async def dashboard(width: int, height: int) -> RenderableType:
        health = await check_all(eps, settings)
        async with engine.connect() as conn:
            snap = await read_snapshot(
                conn,
                starting_cash=settings.paper_starting_cash_usd,
                trades=height,
                signals=height,
                cap_window_seconds=settings.trade_cap_window_seconds,
            )
        return render_dashboard(snap, health, width=width, height=height, cap=cap)

    try:
        if args.no_ui:
            timeout = args.duration or None
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        else:
            with Live(console=console, refresh_per_second=2, screen=False, vertical_overflow="crop") as live:
                done = set()
                while not done:
                    size = console.size
                    live.update(await dashboard(size.width, size.height - 1))
                    done, _ = await asyncio.wait(waiters, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                    if args.duration and time.monotonic() - started >= args.duration:
                        break
        if args.screenshot is not None:
            await _save_screenshot(args.screenshot, dashboard)
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


SCREENSHOT_SIZE = (100, 32)


async def _save_screenshot(path: Path, dashboard: Callable[[int, int], Awaitable[object]]) -> None:
    """The live view as it is now, at a fixed 100x32, as SVG (rich's export): the picture in the README."""
    import io

    from rich.console import Console

    width, height = SCREENSHOT_SIZE
    recorder = Console(width=width, height=height, record=True, file=io.StringIO(), force_terminal=True)
    recorder.print(await dashboard(width, height - 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    recorder.save_svg(str(path), title="make run")


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
