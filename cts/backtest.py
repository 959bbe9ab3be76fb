"""`cts backtest`: replay candles through the production decision code and paper fills, in market time.

Shared with production (no second implementation): the features (generator_svc.features.compute_features), the
model and its loader (generator_svc.model_store), the signal rule (generator_svc.signal_rule), the bridge's
eligibility and pricing rules (bridge_svc.eligibility, bridge_svc.pricing) and the executor's paper fill math
(executor_svc.paper_fill). What differs from the live system, on purpose:

- time is market time: one step per hourly candle, orders fill at the close of the signal's candle (the paper
  executor in replay mode does the same);
- the live system's wall-clock windows (signals younger than 1 h, pending recommendations younger than 2 h, at most
  3 executions per 30 s) do not apply: every eligible signal is executed at once;
- stop-loss and take-profit levels are recorded, not acted on (the live system places market orders only);
- one open position rule as in the live system's paper portfolio: BUY needs cash, SELL needs holdings.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from bridge_svc.eligibility import EligibilityRules, skip_reason
from bridge_svc.pricing import PricingTerms, price_levels
from bridge_svc.signals import TradingSignal
from common.config import Settings
from common.lifecycle import OrderSide, OrderStatus, SignalType
from generator_svc.features import FEATURE_NAMES, compute_features
from generator_svc.model_store import LoadedModel

HOURS_PER_YEAR = 24 * 365


@dataclass(frozen=True)
class Decision:
    """What the live generator would write for one candle."""

    symbol: str
    candle_time: datetime  # start of the candle
    signal_type: str  # BUY / SELL / HOLD
    confidence: Decimal
    price: Decimal


@dataclass(frozen=True)
class Trade:
    time: datetime
    symbol: str
    side: OrderSide
    size: Decimal
    price: Decimal
    fee: Decimal
    cash_after: Decimal
    status: OrderStatus  # EXECUTED / FAILED
    reason: str = ""
    pnl: Decimal | None = None  # realised on SELL against the average cost


@dataclass
class BacktestResult:
    equity: pd.Series  # USD, indexed by candle close time
    buy_and_hold: pd.Series
    trades: list[Trade]
    decisions: list[Decision]
    metrics: dict[str, Any] = field(default_factory=dict)
    invested: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))  # USD in holdings, as ``equity``
    starting_cash: Decimal = Decimal(0)


def decisions_for_symbol(symbol: str, candles: pd.DataFrame, model: LoadedModel, settings: Settings) -> list[Decision]:
    """The signal the generator would write on every candle of ``candles`` (rows without full history excluded)."""
    from generator_svc.signal_rule import decide_from_probabilities

    features = compute_features(candles.reset_index(drop=True))
    matrix = features[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    complete = ~np.isnan(matrix).any(axis=1)
    out: list[Decision] = []
    if not complete.any():
        return out
    probabilities = model.predict_proba(matrix[complete])
    rows = candles.reset_index(drop=True)[complete]
    for (_, candle), probs in zip(rows.iterrows(), probabilities, strict=True):
        by_class = dict(zip(model.classes, (float(p) for p in probs), strict=True))
        signal_type, confidence = decide_from_probabilities(by_class, settings.buy_threshold, settings.sell_threshold)
        out.append(
            Decision(
                symbol=symbol,
                candle_time=datetime.fromtimestamp(int(candle["timestamp"]), UTC),
                signal_type=signal_type,
                confidence=confidence,
                price=Decimal(str(candle["close"])),
            )
        )
    return out


def run_backtest(
    candles_by_symbol: Mapping[str, pd.DataFrame],
    model: LoadedModel,
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
    start: datetime | None = None,
) -> BacktestResult:
    from executor_svc.paper_fill import paper_fill

    decisions: list[Decision] = []
    for symbol, candles in candles_by_symbol.items():
        decisions.extend(decisions_for_symbol(symbol, candles, model, settings))
    if start is not None:
        decisions = [d for d in decisions if d.candle_time >= start]
    decisions.sort(key=lambda d: (d.candle_time, d.symbol))

    rules = EligibilityRules(
        min_confidence=Decimal(str(settings.bridge_min_confidence)),
        max_age=timedelta(seconds=settings.bridge_signal_max_age_seconds),
    )
    terms = PricingTerms(
        amount_usd=settings.trade_amount_usd,
        stop_loss_percent=settings.stop_loss_percent,
        take_profit_percent=settings.take_profit_percent,
        position_size_percent=settings.position_size_percent,
    )
    cash = settings.paper_starting_cash_usd
    holdings: dict[str, Decimal] = {}
    cost: dict[str, Decimal] = {}
    last_price: dict[str, Decimal] = {}
    trades: list[Trade] = []
    equity_points: dict[datetime, Decimal] = {}
    invested_points: dict[datetime, Decimal] = {}

    for i, d in enumerate(decisions):
        last_price[d.symbol] = d.price
        close_time = d.candle_time + timedelta(hours=1)
        signal = TradingSignal(
            id=i + 1,
            symbol=d.symbol,
            signal_type=d.signal_type,
            confidence=d.confidence,
            price=d.price,
            created_at=close_time,
            processed=False,
            is_mock=True,
        )
        if skip_reason(signal, rules, close_time) is None:
            levels = price_levels(d.signal_type, d.price, terms)
            held = holdings.get(d.symbol, Decimal(0))
            fill = paper_fill(
                side=d.signal_type,
                market_price=d.price,
                quote_size=levels.amount_usd,
                base_size=levels.amount_crypto,
                slippage_bps=settings.paper_slippage_bps,
                fee_rate=settings.paper_taker_fee_rate,
            )
            if d.signal_type == SignalType.BUY and fill.quote_total + fill.fee > cash:
                trades.append(
                    Trade(
                        close_time,
                        d.symbol,
                        OrderSide.BUY,
                        Decimal(0),
                        d.price,
                        Decimal(0),
                        cash,
                        OrderStatus.FAILED,
                        "insufficient cash",
                    )
                )
            elif d.signal_type == SignalType.SELL and fill.size > held:
                trades.append(
                    Trade(
                        close_time,
                        d.symbol,
                        OrderSide.SELL,
                        Decimal(0),
                        d.price,
                        Decimal(0),
                        cash,
                        OrderStatus.FAILED,
                        "insufficient holdings",
                    )
                )
            elif d.signal_type == SignalType.BUY:
                cash -= fill.quote_total + fill.fee
                total_cost = cost.get(d.symbol, Decimal(0)) + fill.quote_total + fill.fee
                holdings[d.symbol] = held + fill.size
                cost[d.symbol] = total_cost
                trades.append(
                    Trade(
                        close_time, d.symbol, OrderSide.BUY, fill.size, fill.price, fill.fee, cash, OrderStatus.EXECUTED
                    )
                )
            else:
                average_cost = cost.get(d.symbol, Decimal(0)) / held if held else Decimal(0)
                proceeds = fill.quote_total - fill.fee
                pnl = proceeds - average_cost * fill.size
                cash += proceeds
                holdings[d.symbol] = held - fill.size
                cost[d.symbol] = cost.get(d.symbol, Decimal(0)) - average_cost * fill.size
                trades.append(
                    Trade(
                        close_time,
                        d.symbol,
                        OrderSide.SELL,
                        fill.size,
                        fill.price,
                        fill.fee,
                        cash,
                        OrderStatus.EXECUTED,
                        pnl=pnl,
                    )
                )
        invested_points[close_time] = sum((q * last_price.get(s, Decimal(0)) for s, q in holdings.items()), Decimal(0))
        equity_points[close_time] = cash + invested_points[close_time]
        if progress is not None and (i % 500 == 0 or i == len(decisions) - 1):
            progress(i + 1, len(decisions))

    equity = pd.Series({t: float(v) for t, v in equity_points.items()}).sort_index()
    bench = buy_and_hold(candles_by_symbol, float(settings.paper_starting_cash_usd), equity.index)
    invested = pd.Series({t: float(v) for t, v in invested_points.items()}, dtype=float).sort_index()
    result = BacktestResult(
        equity=equity,
        buy_and_hold=bench,
        trades=trades,
        decisions=decisions,
        invested=invested,
        starting_cash=settings.paper_starting_cash_usd,
    )
    result.metrics = metrics(result, float(settings.paper_starting_cash_usd))
    return result


def buy_and_hold(candles_by_symbol: Mapping[str, pd.DataFrame], cash: float, index: pd.Index) -> pd.Series:
    """Equal weights in every symbol at its first close, held to the end (valued on ``index``)."""
    if len(index) == 0 or not candles_by_symbol:
        return pd.Series(dtype=float)
    share = cash / len(candles_by_symbol)
    total = pd.Series(0.0, index=index)
    for candles in candles_by_symbol.values():
        closes = pd.Series(
            candles["close"].astype(float).to_numpy(),
            index=[datetime.fromtimestamp(int(t), UTC) + timedelta(hours=1) for t in candles["timestamp"]],
        ).sort_index()
        aligned = closes.reindex(index, method="ffill").bfill()
        total = total + share * aligned / float(aligned.iloc[0])
    return total


def max_drawdown(equity: pd.Series) -> float:
    if equity.empty:
        return 0.0
    peak = equity.cummax()
    return float(((equity - peak) / peak).min())


def sharpe(equity: pd.Series) -> float:
    """Annualised Sharpe ratio of hourly equity returns (risk-free rate 0)."""
    hourly = equity.resample("1h").last().ffill().pct_change().dropna()
    if len(hourly) < 2 or float(hourly.std()) == 0.0:
        return 0.0
    return float(hourly.mean() / hourly.std() * math.sqrt(HOURS_PER_YEAR))


def metrics(result: BacktestResult, starting_cash: float) -> dict[str, Any]:
    executed = [t for t in result.trades if t.status == OrderStatus.EXECUTED]
    closed = [t for t in executed if t.pnl is not None]
    final = float(result.equity.iloc[-1]) if not result.equity.empty else starting_cash
    bench_final = float(result.buy_and_hold.iloc[-1]) if not result.buy_and_hold.empty else starting_cash
    return {
        "total_return": round(final / starting_cash - 1, 6),
        "buy_and_hold_return": round(bench_final / starting_cash - 1, 6),
        "max_drawdown": round(max_drawdown(result.equity), 6),
        "sharpe": round(sharpe(result.equity), 4),
        "win_rate": round(sum(1 for t in closed if (t.pnl or 0) > 0) / len(closed), 4) if closed else None,
        "trades": len(executed),
        "failed_orders": len(result.trades) - len(executed),
        "closed_trades": len(closed),
        "fees_paid": float(sum((t.fee for t in executed), Decimal(0))),
        "signals": {k: sum(1 for d in result.decisions if d.signal_type == k) for k in ("BUY", "SELL", "HOLD")},
        "final_equity": round(final, 2),
        "average_exposure": round(average_exposure(result), 6),
    }


def average_exposure(result: BacktestResult) -> float:
    """Mean share of equity held in assets (0 = all cash) over the equity curve's points."""
    if result.equity.empty or result.invested.empty:
        return 0.0
    return float((result.invested.reindex(result.equity.index).fillna(0.0) / result.equity).mean())


@dataclass(frozen=True)
class SymbolStats:
    """One symbol's share of the result. ``pnl`` = realised + open; the symbols' P&L add up to the portfolio's."""

    symbol: str
    buys: int
    sells: int
    refused: int
    wins: int  # SELLs with a positive realised P&L
    invested: Decimal  # USD spent on BUYs, fees included
    fees: Decimal
    realised_pnl: Decimal
    open_pnl: Decimal  # holdings at the last price minus their remaining cost
    held: Decimal  # units held at the end
    buy_and_hold_return: float | None  # the symbol's last close / first close - 1 over the period

    @property
    def trades(self) -> int:
        return self.buys + self.sells

    @property
    def pnl(self) -> Decimal:
        return self.realised_pnl + self.open_pnl

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.sells if self.sells else None

    @property
    def return_on_invested(self) -> float | None:
        return float(self.pnl / self.invested) if self.invested else None


def symbol_breakdown(result: BacktestResult) -> list[SymbolStats]:
    """Per-symbol trades, win rate, P&L, fees and return, from the trades and the decisions' closes."""
    from executor_svc.paper_fill import USD_QUANTUM

    first: dict[str, Decimal] = {}
    last: dict[str, Decimal] = {}
    for d in result.decisions:
        first.setdefault(d.symbol, d.price)
        last[d.symbol] = d.price
    out: list[SymbolStats] = []
    for symbol in sorted(set(first) | {t.symbol for t in result.trades}):
        trades = [t for t in result.trades if t.symbol == symbol]
        buys = [t for t in trades if t.status == OrderStatus.EXECUTED and t.side == OrderSide.BUY]
        sells = [t for t in trades if t.status == OrderStatus.EXECUTED and t.side == OrderSide.SELL]
        spent = sum(((t.size * t.price).quantize(USD_QUANTUM) + t.fee for t in buys), Decimal(0))
        received = sum(((t.size * t.price).quantize(USD_QUANTUM) - t.fee for t in sells), Decimal(0))
        held = sum((t.size for t in buys), Decimal(0)) - sum((t.size for t in sells), Decimal(0))
        realised = sum((t.pnl for t in sells if t.pnl is not None), Decimal(0))
        total = received - spent + held * last.get(symbol, Decimal(0))
        out.append(
            SymbolStats(
                symbol=symbol,
                buys=len(buys),
                sells=len(sells),
                refused=sum(1 for t in trades if t.status != OrderStatus.EXECUTED),
                wins=sum(1 for t in sells if t.pnl is not None and t.pnl > 0),
                invested=spent,
                fees=sum((t.fee for t in buys + sells), Decimal(0)),
                realised_pnl=realised,
                open_pnl=total - realised,
                held=held,
                buy_and_hold_return=float(last[symbol] / first[symbol] - 1) if first.get(symbol) else None,
            )
        )
    return out


def outcome_counts(result: BacktestResult) -> dict[str, dict[str, int]]:
    """Executed exits (SELLs) and refused orders, counted by reason (most frequent first)."""
    exits = Counter(
        t.reason or "SELL signal"
        for t in result.trades
        if t.status == OrderStatus.EXECUTED and t.side == OrderSide.SELL
    )
    refusals = Counter(f"{t.side}: {t.reason or 'refused'}" for t in result.trades if t.status != OrderStatus.EXECUTED)
    return {"exits": dict(exits.most_common()), "refusals": dict(refusals.most_common())}
