"""The `cts up` live view: what a trader sees at 80x24 and at 200x50 (rich Console with a fixed size)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rich.console import Console

from cts.status_queries import PositionLine, ReplayProgress, SignalLine, StatusSnapshot, TradeLine
from cts.status_view import QUIT_KEY, TradeCap, price, render_dashboard

HEALTH = {"executor": "SERVING", "orchestrator": "SERVING", "bridge": "SERVING", "generator": "NOT_SERVING"}
MARKET = datetime(2019, 7, 3, 14, 0, tzinfo=UTC)


def _snapshot(positions: int = 3, trades: int = 12, signals: int = 12, finished: bool = False) -> StatusSnapshot:
    snap = StatusSnapshot(starting_cash=Decimal("10000"))
    snap.equity_usd = Decimal("10123.45")
    snap.holdings = []  # profit_and_loss needs holdings
    snap.cash_usd = Decimal("9700")
    snap.replay_clock = MARKET
    snap.replay_progress = ReplayProgress(2727 if finished else 431, 2727)
    snap.trades_in_cap_window = 2
    snap.signals_by_type = {"BUY": 40, "SELL": 12, "HOLD": 900}
    snap.recommendations_by_status = {"EXECUTED": 30, "FAILED": 1}
    symbols = ["BTC-USD", "ETH-USD", "SHIB-USD", "XRP-USD", "LTC-USD"]
    snap.positions = [
        PositionLine(
            symbols[i % 5],
            Decimal("123.45678901"),
            Decimal("0.00002100"),
            Decimal("0.00002345"),
            Decimal("0.00002058"),
            Decimal("0.00002184"),
        )
        for i in range(positions)
    ]
    snap.latest_trades = [
        TradeLine(
            100 - i,
            symbols[i % 5],
            "BUY" if i % 2 else "SELL",
            "EXECUTED",
            "PAPER",
            Decimal("0.01234567"),
            Decimal("10512.3456"),
            Decimal("0.6"),
            None,
            MARKET - timedelta(minutes=i),
            Decimal("10500.12"),
        )
        for i in range(trades)
    ]
    snap.latest_signals = [
        SignalLine(symbols[i % 5], "BUY", Decimal("0.6123"), Decimal("1.2345"), MARKET - timedelta(hours=i), None)
        for i in range(signals)
    ]
    return snap


def _screen(snap: StatusSnapshot, width: int, height: int) -> list[str]:
    console = Console(width=width, height=height, record=True, color_system=None, legacy_windows=False)
    cap = TradeCap(3, 30)
    console.print(render_dashboard(snap, HEALTH, width=width, height=height - 1, cap=cap))
    return console.export_text().rstrip("\n").split("\n")


def test_at_80x24_everything_a_trader_needs_is_on_the_screen() -> None:
    lines = _screen(_snapshot(), 80, 24)
    text = "\n".join(lines)
    assert len(lines) <= 23, text
    assert all(len(line) <= 80 for line in lines), text
    assert "Equity $10,123.45" in lines[0]
    assert "+123.45" in lines[0]
    assert "+1.23 %" in lines[0]
    assert "market 2019-07-03 14:00" in lines[0]
    assert "431/2,727 candles" in text
    assert "cap 2/3 per 30s" in text
    assert "trading on" in text
    assert "generator not serving" in text
    # the three sections, each with at least one row of real content
    assert "Open positions (3)" in text
    assert "0.00002345" in text
    assert "Latest trades (newest first)" in text
    assert "10,500.12" in text
    assert "10,512.35" in text
    assert "Latest BUY/SELL signals" in text
    assert "0.6123" in text
    assert lines[-1].strip() == QUIT_KEY


def test_newest_trade_first() -> None:
    lines = _screen(_snapshot(), 80, 24)
    trade_rows = [line for line in lines if " EXECUTED" in line or " EXECUTE" in line]
    assert trade_rows
    assert " 100 " in trade_rows[0]


def test_a_bigger_terminal_shows_more_rows_and_columns() -> None:
    small = _screen(_snapshot(), 80, 24)
    big = _screen(_snapshot(), 200, 50)
    assert len(big) <= 49
    assert sum("EXECUTED" in line for line in big) > sum("EXECUTED" in line for line in small)
    text = "\n".join(big)
    assert "fees" in text
    assert "value $" in text
    assert "PAPER" in text


def test_replay_finished_is_said_clearly() -> None:
    text = "\n".join(_screen(_snapshot(finished=True), 80, 24))
    assert "Replay finished" in text
    assert "2,727" in text


@pytest.mark.parametrize("height", [12, 16, 24])
def test_short_terminals_never_overflow(height: int) -> None:
    lines = _screen(_snapshot(positions=10, trades=30, signals=30), 80, height)
    assert len(lines) <= height - 1
    assert lines[0].startswith("Equity")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (Decimal("0.000023456789"), "0.0000234568"),
        (Decimal("60123.456"), "60,123.46"),
        (Decimal("1.23456"), "1.2346"),
        (Decimal("1E-7"), "0.0000001"),
    ],
)
def test_prices_keep_their_digits_and_never_use_exponents(value: Decimal, shown: str) -> None:
    assert price(value) == shown


def test_cts_status_shows_the_reconciliation_and_what_disagrees() -> None:
    from cts.status_view import render

    snap = _snapshot()
    snap.reconciliation = {
        "checked_at": "2026-11-26T02:00:00+00:00",
        "orders_seen": 3,
        "unknown_count": 1,
        "mismatch_count": 0,
        "unresolved": 0,
        "unknown": ["ex-1 (BTC-USD BUY FILLED, client_order_id other-1)"],
        "mismatches": [],
    }
    console = Console(width=160, record=True, color_system=None)
    console.print(render(snap))
    text = console.export_text()
    assert "3 exchange order(s), 1 unknown, 0 disagreeing" in text
    assert "client_order_id other-1" in text
