"""The backtest makes the same decisions as the live generator on the same candles, and writes its report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from common.config import load_settings
from common.database import create_engine
from common.server import running_service
from crypto_trading.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from cts.backtest import decisions_for_symbol, run_backtest
from cts.backtest_report import write_report
from generator_svc.model_store import load_model
from generator_svc.server import DEFINITION
from tests.conftest import make_settings
from tests.support.seed import seed_bundled

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
