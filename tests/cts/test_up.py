"""`cts up` end to end: the whole system as four processes on the real candles of ../shared, stopped with Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select

from common.database import create_engine
from common.tables import trade_executions, trading_signals
from cts.health_probe import check_all, endpoints
from testkit.ports import free_ports
from tests.conftest import make_settings

pytestmark = pytest.mark.slow


def _environment(tmp_path: Path) -> tuple[dict[str, str], str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crypto_prices.db'}"
    ports = free_ports(8)
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        BIND_HOST="127.0.0.1",
        SIGNAL_GENERATOR_PORT=str(ports[0]),
        SIGNAL_BRIDGE_PORT=str(ports[1]),
        TRADE_ORCHESTRATOR_PORT=str(ports[2]),
        TRADE_EXECUTOR_PORT=str(ports[3]),
        SIGNAL_GENERATOR_METRICS_PORT=str(ports[4]),
        SIGNAL_BRIDGE_METRICS_PORT=str(ports[5]),
        TRADE_ORCHESTRATOR_METRICS_PORT=str(ports[6]),
        TRADE_EXECUTOR_METRICS_PORT=str(ports[7]),
        SIGNAL_GENERATOR_ADDR=f"127.0.0.1:{ports[0]}",
        SIGNAL_BRIDGE_ADDR=f"127.0.0.1:{ports[1]}",
        TRADE_ORCHESTRATOR_ADDR=f"127.0.0.1:{ports[2]}",
        TRADE_EXECUTOR_ADDR=f"127.0.0.1:{ports[3]}",
    )
    return env, url


async def _count(url: str, table: object) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]
    finally:
        await engine.dispose()


def _all_serving(env: dict[str, str], url: str) -> bool:
    settings = make_settings(
        url,
        **{k.lower(): v for k, v in env.items() if k.endswith(("_ADDR", "_PORT")) and k.lower() != "port"},
    )
    health = asyncio.run(check_all(endpoints(settings), settings))
    return all(status == "SERVING" for status in health.values())


@contextmanager
def cts_up(tmp_path: Path, env: dict[str, str], seconds_per_candle: str) -> Iterator[subprocess.Popen[str]]:
    """`cts up --no-ui` as a process, its output in console.txt (a file, not a pipe nobody reads until the end: a
    full pipe would stall the services' logging); killed if the test leaves it running."""
    console = (tmp_path / "console.txt").open("w")
    command = ["up", "--no-ui", "--seconds-per-candle", seconds_per_candle, "--log-dir", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cts", *command], env=env, stdout=console, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        console.close()


def _wait_serving(proc: subprocess.Popen[str], env: dict[str, str], url: str, deadline: float) -> None:
    while time.monotonic() < deadline and proc.poll() is None and not _all_serving(env, url):
        time.sleep(0.5)
    assert _all_serving(env, url), "the four services never became SERVING"


def test_cts_up_trades_on_the_bundled_data_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env, url = _environment(tmp_path)
    with cts_up(tmp_path, env, "0.05") as proc:
        deadline = time.monotonic() + 120
        _wait_serving(proc, env, url, deadline)
        while time.monotonic() < deadline and asyncio.run(_count(url, trade_executions)) == 0:
            assert proc.poll() is None, "cts up exited early"
            time.sleep(1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    output = (tmp_path / "console.txt").read_text()
    assert proc.returncode == 0, output[-3000:]
    assert "all services stopped cleanly" in output
    assert asyncio.run(_count(url, trading_signals)) > 0
    assert asyncio.run(_count(url, trade_executions)) > 0
    assert not _all_serving(env, url)
    # The log lines arrive whole through a pipe or file (never wrapped at 80 columns), so the runbook's greps work.
    executed = [line for line in output.splitlines() if "Successfully executed recommendation" in line]
    assert executed, output[-3000:]
    assert all(line.lstrip().startswith("orchestrator ") and "(order " in line for line in executed)
    assert max(len(line) for line in executed) > 80
    # HOLD signals only at DEBUG; one INFO line per cycle with the counts.
    generator_log = (tmp_path / "generator.log").read_text()
    assert "Cycle as of " in generator_log
    assert "Generated HOLD signal" not in generator_log


def test_each_run_starts_a_fresh_embedded_database_unless_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cts.commands.up import _start_fresh

    monkeypatch.chdir(tmp_path)
    (tmp_path / "var").mkdir()
    embedded = tmp_path / "var" / "crypto_prices.db"
    for path in (embedded, tmp_path / "var" / "crypto_prices.db-wal", tmp_path / "elsewhere.db"):
        path.write_text("old run")
    _start_fresh(make_settings("sqlite+aiosqlite:///var/crypto_prices.db"))
    assert not embedded.exists()
    assert not (tmp_path / "var" / "crypto_prices.db-wal").exists()
    # A database outside var/ (or MySQL) is the user's own: never removed.
    _start_fresh(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'elsewhere.db'}"))
    _start_fresh(make_settings("mysql+asyncmy://root@127.0.0.1:3306/crypto_prices"))
    assert (tmp_path / "elsewhere.db").read_text() == "old run"


def test_closing_the_terminal_stops_every_service(tmp_path: Path) -> None:
    """SIGHUP (the terminal closed) stops the services like Ctrl-C; none is left running without its supervisor."""
    env, url = _environment(tmp_path)
    with cts_up(tmp_path, env, "3600") as proc:
        _wait_serving(proc, env, url, time.monotonic() + 120)
        proc.send_signal(signal.SIGHUP)
        proc.wait(timeout=60)
    output = (tmp_path / "console.txt").read_text()
    assert proc.returncode == 0, output[-3000:]
    assert "all services stopped cleanly" in output
    assert not _all_serving(env, url)
