from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest

from common.config import load_settings
from common.errors import ConfigError


def test_defaults_are_the_embedded_setup() -> None:
    settings = load_settings({})
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.execution_mode == "paper"
    assert (
        settings.signal_generator_port,
        settings.signal_bridge_port,
        settings.trade_orchestrator_port,
        settings.trade_executor_port,
    ) == (8025, 8022, 8023, 8024)
    assert settings.trade_executor_addr == "localhost:8024"
    assert settings.trade_amount_usd == Decimal("100")
    assert isinstance(settings.trade_amount_usd, Decimal)


def test_environment_overrides_and_lists() -> None:
    settings = load_settings(
        {
            "SIGNAL_BRIDGE_PORT": "9100",
            "SYMBOL_DENYLIST": "doge-usd, shib-usd",
            "EXECUTION_MODE": "live",
            "MARKET_DATA_SOURCE": "coinbase",
        }
    )
    assert settings.signal_bridge_port == 9100
    assert settings.symbol_denylist == ["DOGE-USD", "SHIB-USD"]
    assert settings.execution_mode == "live"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": "not a url at all"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u:p@h/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql+asyncmy://u:p@h:3306"}, "DATABASE_URL"),
        ({"SIGNAL_GENERATOR_PORT": "70000"}, "SIGNAL_GENERATOR_PORT"),
        ({"TRADE_EXECUTOR_PORT": "0"}, "TRADE_EXECUTOR_PORT"),
        ({"TRADE_EXECUTOR_PORT": "eighty"}, "TRADE_EXECUTOR_PORT"),
        ({"EXECUTION_MODE": "yolo"}, "EXECUTION_MODE"),
        ({"BUY_THRESHOLD": "1.0"}, "BUY_THRESHOLD"),
        ({"SELL_THRESHOLD": "0"}, "SELL_THRESHOLD"),
        ({"TRADE_EXECUTOR_ADDR": "nohostport"}, "TRADE_EXECUTOR_ADDR"),
        ({"TRADE_AMOUNT_USD": "-5"}, "TRADE_AMOUNT_USD"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert message.startswith(f"{variable}:")
    assert "\n" not in message


@pytest.mark.parametrize("source", [None, "replay", "database"])
def test_live_mode_requires_live_market_data(source: str | None) -> None:
    env = {"EXECUTION_MODE": "live"} | ({"MARKET_DATA_SOURCE": source} if source else {})
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert str(info.value) == "CONFIGURATION: EXECUTION_MODE=live requires MARKET_DATA_SOURCE=coinbase"
    assert load_settings({**env, "MARKET_DATA_SOURCE": "coinbase"}).execution_mode == "live"
    assert load_settings({"MARKET_DATA_SOURCE": "replay"}).execution_mode == "paper"


def test_live_mode_without_live_market_data_stops_the_executor() -> None:
    env = {"EXECUTION_MODE": "live", "MARKET_DATA_SOURCE": "replay", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "executor_svc"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "EXECUTION_MODE=live requires MARKET_DATA_SOURCE=coinbase" in lines[0]


def test_error_never_contains_the_value() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"DATABASE_URL": "postgresql://trader:hunter2-secret@db/crypto"})
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("module", ["generator_svc", "bridge_svc", "orchestrator_svc", "executor_svc"])
def test_service_exits_non_zero_with_one_line(module: str) -> None:
    env = {"EXECUTION_MODE": "sometimes", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "EXECUTION_MODE" in lines[0]
