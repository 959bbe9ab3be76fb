"""`cts health`: GET /health (or /live) on the metrics ports of real service processes; exit 0 only when SERVING."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.ports import free_ports
from tests.common.test_server import SERVING, wait_for_status


@dataclass
class Bridge:
    env: dict[str, str]
    metrics_port: int
    process: subprocess.Popen[str]


def _environment(database_url: str) -> tuple[dict[str, str], list[int]]:
    """Every port a free one, so nothing else on this machine answers for a service that is not started."""
    ports = free_ports(5)
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        SIGNAL_BRIDGE_PORT=str(ports[0]),
        SIGNAL_BRIDGE_METRICS_PORT=str(ports[1]),
        SIGNAL_GENERATOR_METRICS_PORT=str(ports[2]),
        TRADE_ORCHESTRATOR_METRICS_PORT=str(ports[3]),
        TRADE_EXECUTOR_METRICS_PORT=str(ports[4]),
        BIND_HOST="127.0.0.1",
        HEALTH_CHECK_INTERVAL_SECONDS="0.2",
        LOG_LEVEL="WARNING",
    )
    return env, ports


def _start_bridge(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge_svc"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    )


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cts_health(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cts", "health", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    db = tmp_path_factory.mktemp("health") / "db.sqlite"
    env, ports = _environment(f"sqlite+aiosqlite:///{db}")
    subprocess.run([sys.executable, "-m", "cts", "migrate"], env=env, check=True, capture_output=True)
    process = _start_bridge(env)
    try:
        assert asyncio.run(wait_for_status(ports[0], "", SERVING, within=30)) == SERVING
        yield Bridge(env, ports[1], process)
    finally:
        _stop(process)


def test_health_of_the_service_running_here(bridge: Bridge) -> None:
    result = cts_health(bridge.env)
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = result.stdout.splitlines()
    assert line.split()[:2] == ["bridge", "SERVING"]
    assert f"127.0.0.1:{bridge.metrics_port}/health" in line


@pytest.mark.parametrize("name", ["bridge", "signal-bridge"])
def test_health_of_a_named_service(bridge: Bridge, name: str) -> None:
    result = cts_health(bridge.env, "--service", name, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"status": "SERVING"' in result.stdout
    assert cts_health(bridge.env, "--service", name, "--live").returncode == 0


def test_a_service_that_does_not_answer_fails(bridge: Bridge) -> None:
    result = cts_health(bridge.env, "--service", "executor")
    assert result.returncode == 1
    assert "UNREACHABLE" in result.stdout
    everything = cts_health(bridge.env, "--all")
    assert everything.returncode == 1  # three of the four do not run
    assert "bridge        SERVING" in everything.stdout
    assert everything.stdout.count("UNREACHABLE") == 3


def test_nothing_running_here_fails(tmp_path: Path) -> None:
    env, _ = _environment(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    result = cts_health(env)
    assert result.returncode == 1
    assert "no service answers on 127.0.0.1" in result.stdout


def test_not_serving_fails_but_the_process_is_live() -> None:
    """The database does not answer: /health says NOT_SERVING (exit 1, with the reason), /live says ALIVE."""
    (nobody,) = free_ports(1)  # a MySQL server that is not there
    env, ports = _environment(f"mysql+asyncmy://trader:pw@127.0.0.1:{nobody}/crypto_prices")
    process = _start_bridge(env)
    try:
        assert asyncio.run(wait_for_status(ports[0], "liveness", SERVING, within=30)) == SERVING
        result = cts_health(env, "--service", "bridge")
        assert result.returncode == 1
        assert "NOT_SERVING" in result.stdout
        assert "database unreachable" in result.stdout
        live = cts_health(env, "--service", "bridge", "--live")
        assert live.returncode == 0, live.stdout
        assert "ALIVE" in live.stdout
    finally:
        _stop(process)


def test_a_disabled_metrics_port_is_reported(bridge: Bridge) -> None:
    env = {**bridge.env, "TRADE_EXECUTOR_METRICS_PORT": "0"}
    result = cts_health(env, "--service", "executor")
    assert result.returncode == 1
    assert "metrics port disabled" in result.stdout
