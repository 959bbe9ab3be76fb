"""The backtest makes the same decisions as the live generator on the same candles, and writes its report."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pandas as pd
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from common.config import load_settings
from common.database import create_engine
from common.server import running_service
from crypto_trading.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from cts.backtest import decisions_for_symbol, run_backtest
from cts.backtest_report import write_report
from cts.candle_data import SHARED_CANDLES_DIR
from generator_svc.model_store import load_model
from generator_svc.server import DEFINITION
from tests.conftest import make_settings
from tests.support.seed import seed_bundled

SHARED_DATA = SHARED_CANDLES_DIR.parent  # ../shared/data

NAMES = {common_pb2.SIGNAL_TYPE_BUY: "BUY", common_pb2.SIGNAL_TYPE_SELL: "SELL", common_pb2.SIGNAL_TYPE_HOLD: "HOLD"}


async def test_backtest_and_live_agree(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    candles = await seed_bundled(engine, "XRP-USD", 700, end_index=20_000)
    await engine.dispose()
    model = load_model(Path("models"))
    settings = load_settings({})
    backtest = {d.candle_time: d for d in decisions_for_symbol("XRP-USD", candles, model, settings)}
    service_settings = make_settings(sqlite_url, market_data_source="database", signal_bridge_addr="127.0.0.1:1")
    live = {}
    async with (
        running_service(DEFINITION, service_settings) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        stub = generator_pb2_grpc.SignalGeneratorServiceStub(channel)
        for start in candles["timestamp"].iloc[-60:]:
            response = await stub.Generate(
                generator_pb2.GenerateRequest(symbols=["XRP-USD"], as_of=Timestamp(seconds=int(start) + 3600)),
                timeout=30,
            )
            signal = response.signals[0]
            live[datetime.fromtimestamp(signal.candle_time.ToSeconds(), UTC)] = signal
    assert len(live) == 60
    for when, signal in live.items():
        decision = backtest[when]
        assert NAMES[signal.signal_type] == decision.signal_type, when
        assert signal.confidence == str(decision.confidence), when


def test_backtest_report(tmp_path: Path) -> None:
    from tests.support.seed import bundled

    model = load_model(Path("models"))
    settings = load_settings({}, bridge_min_confidence=0.5)
    candles = {s: bundled(s).iloc[-1200:].reset_index(drop=True) for s in ("ETH-USD", "LTC-USD")}
    result = run_backtest(candles, model, settings)
    paths = write_report(result, tmp_path, {"model": model.file_name})
    assert paths["equity_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = result.metrics
    for key in ("total_return", "max_drawdown", "sharpe", "win_rate", "trades", "fees_paid"):
        assert key in m
    assert m["max_drawdown"] <= 0
    executed = [t for t in result.trades if t.status == "EXECUTED"]
    assert m["trades"] == len(executed)
    assert abs(m["fees_paid"] - float(sum(t.fee for t in executed))) < 1e-6
    # Equity = cash + holdings; every BUY costs its fill plus fee.
    assert result.equity.iloc[0] <= float(settings.paper_starting_cash_usd) + 1e-6
    assert len(paths["trades_csv"].read_text().splitlines()) == len(result.trades) + 1


@pytest.mark.parametrize(
    ("directory", "symbols"),
    [
        (SHARED_DATA / "candles", ("ETH-USD", "LTC-USD", "XRP-USD")),
        (SHARED_DATA / "binance_2024h1", ("SOL-USD", "DOGE-USD", "LINK-USD", "AVAX-USD")),
    ],
)
def test_positions_trade_sensibly_on_real_candles(directory: Path, symbols: tuple[str, ...]) -> None:
    """Refused recommendations stay below 1 % of all, and every executed BUY carries a stop and a target and, once
    closed, an exit reason (the long-only stream of orders refused 83 % before positions)."""
    candles = {
        s: pd.read_csv(directory / f"{s}_1h.csv.gz").sort_values("timestamp").iloc[-2500:].reset_index(drop=True)
        for s in symbols
    }
    settings = load_settings({}, bridge_min_confidence=0.5)
    result = run_backtest(candles, load_model(Path("models")), settings)
    m = result.metrics
    executed = [t for t in result.trades if t.status == "EXECUTED"]
    assert m["recommendations"] >= 20, m
    assert m["refused_recommendations"] / m["recommendations"] < 0.01, m
    buys = [t for t in executed if t.side == "BUY"]
    assert buys
    assert all(t.stop_loss is not None and t.take_profit is not None for t in buys)
    assert all(t.stop_loss < t.price < t.take_profit for t in buys if t.stop_loss and t.take_profit)
    sells = [t for t in executed if t.side == "SELL"]
    assert sells
    assert all(t.exit_reason in {"signal", "stop_loss", "take_profit", "time_limit"} for t in sells)
    assert all(t.held_hours is not None and t.held_hours > 0 for t in sells)
    # Positions: a symbol's executed orders alternate BUY, SELL, BUY, ... (never two entries, never a bare SELL).
    for symbol in symbols:
        sides = [t.side for t in executed if t.symbol == symbol]
        assert all(a != b for a, b in itertools.pairwise(sides)), (symbol, sides)
        assert not sides or sides[0] == "BUY"
