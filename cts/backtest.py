"""`cts backtest`: the replay's pipeline on historical candles, in market time, in memory.

It runs the steps the replay runs for every released candle (generator_svc.replay_conductor), in the same order,
through the same code:

1. protective exits of the open positions (executor_svc.exits.decide_exit; the paper fill and position math of
   executor_svc.paper_broker.settle_paper_order);
2. the generator's decision on the candle (generator_svc.features, the model and its loader, generator_svc.signal_rule);
3. the bridge: eligibility (bridge_svc.eligibility), positions (bridge_svc.admission, in admission order), pricing
   (bridge_svc.recommendations.propose / bridge_svc.pricing);
4. the orchestrator: a cycle at T, T + 30 s, ... (ORCHESTRATOR_INTERVAL_SECONDS) until nothing is pending, each
   taking the best PENDING recommendations (highest confidence, oldest, lowest id) within the rolling trade cap
   (MAX_TRADES_PER_WINDOW per TRADE_CAP_WINDOW_SECONDS) and cancelling those older than the pending window; each is
   filled at the close of the last candle closed at the cycle's time (executor_svc.paper_broker.settle_paper_order).

So a replay of `make run` to the end of its candles and `cts backtest` over the same candles and period end with the
same trades (tests/cts/test_parity.py). What differs: no database, no gRPC, no wall clock; features are computed over
each symbol's whole history where the generator uses its last HISTORY_WINDOW candles (the difference in a
probability is below 1e-6: a confidence at a threshold's 4th decimal could, very rarely, round the other way).
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

from bridge_svc.admission import PositionBook, admission_order
from bridge_svc.eligibility import EligibilityRules, skip_reason
from bridge_svc.pricing import PricingTerms
from bridge_svc.recommendations import NewRecommendation, propose
from bridge_svc.signals import TradingSignal
from common.candles import candle_seconds
from common.config import Settings, exit_rules_max_holding
from common.lifecycle import ExecutionMode, ExitReason, OrderSide, OrderStatus, SignalType
from executor_svc.domain import OrderRequest
from executor_svc.exits import Candle, ExitRules, decide_exit
from executor_svc.paper_broker import settle_paper_order
from executor_svc.positions import Position
from generator_svc.bars import all_phase_bars
from generator_svc.features import FEATURE_NAMES, compute_features
from generator_svc.model_store import LoadedModel

HOURS_PER_YEAR = 24 * 365
HOUR = 3600
MARKET_QUANTUM = Decimal("0.0000000001")  # market_candles' price scale
SIGNAL_QUANTUM = Decimal("0.00000001")  # trading_signals.price's scale


def market_price(value: float) -> Decimal:
    """A candle price as market_candles stores it (10 decimals)."""
    return Decimal(str(value)).quantize(MARKET_QUANTUM)


def signal_price(value: Decimal) -> Decimal:
    """The price the generator writes on a signal: the candle close through a float, 8 decimals."""
    return Decimal(repr(float(value))).quantize(SIGNAL_QUANTUM)


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
    reason: str = ""  # why it FAILED
    pnl: Decimal | None = None  # realised on the SELL that closes a position (after both fees)
    exit_reason: str = ""  # the SELL's: signal, stop_loss, take_profit, time_limit
    held_hours: float | None = None  # the SELL's: how long the position was open
    recommendation_id: int = 0
    stop_loss: Decimal | None = None  # the BUY's: the levels that protect the position it opened
    take_profit: Decimal | None = None


@dataclass
class BacktestResult:
    equity: pd.Series  # USD, indexed by candle close time
    buy_and_hold: pd.Series
    trades: list[Trade]
    decisions: list[Decision]
    metrics: dict[str, Any] = field(default_factory=dict)
    invested: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))  # USD in holdings, as ``equity``
    starting_cash: Decimal = Decimal(0)
    # BUY/SELL signals the bridge turned down, by reason (no_position, position_open, max_positions, ...)
    skipped_signals: Counter[str] = field(default_factory=Counter)
    recommendations: int = 0  # recommendations written (each executed, refused or cancelled)
    cancelled: int = 0  # recommendations not executed within the pending window


def decisions_for_candles(symbol: str, candles: pd.DataFrame, model: LoadedModel, settings: Settings) -> list[Decision]:
    """The signal the generator would write at every candle close of ``candles`` of the configured granularity:
    hourly candles are the bars themselves; 5-minute candles give the hourly bars anchored at each 5-minute close
    (generator_svc.bars, all twelve phases), as the generator builds them."""
    if candle_seconds(settings.candle_granularity) == HOUR:
        return decisions_for_symbol(symbol, candles, model, settings)
    decisions: list[Decision] = []
    for bars in all_phase_bars(candles).values():
        decisions.extend(decisions_for_symbol(symbol, bars, model, settings))
    return decisions


def decisions_for_symbol(symbol: str, candles: pd.DataFrame, model: LoadedModel, settings: Settings) -> list[Decision]:
    """The signal the generator would write on every hourly bar of ``candles`` (rows without full history
    excluded)."""
    from generator_svc.signal_rule import decide_from_probabilities

    features = compute_features(candles.reset_index(drop=True))
    matrix = features[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    complete = ~np.isnan(matrix).any(axis=1)
    out: list[Decision] = []
    if not complete.any():
        return out
    probabilities = model.predict_proba(matrix[complete])
    rows = candles.reset_index(drop=True)[complete]
    for timestamp, close, probs in zip(rows["timestamp"], rows["close"], probabilities, strict=True):
        by_class = dict(zip(model.classes, (float(p) for p in probs), strict=True))
        signal_type, confidence = decide_from_probabilities(by_class, settings.buy_threshold, settings.sell_threshold)
        out.append(
            Decision(
                symbol=symbol,
                candle_time=datetime.fromtimestamp(int(timestamp), UTC),
                signal_type=signal_type,
                confidence=confidence,
                price=signal_price(market_price(float(close))),
            )
        )
    return out


@dataclass
class _Pending:
    id: int
    proposal: NewRecommendation


class _Simulation:
    """The replay's pipeline in memory (see the module docstring); one instance per run."""

    def __init__(self, candles_by_symbol: Mapping[str, pd.DataFrame], settings: Settings) -> None:
        self.settings = settings
        self.step = timedelta(seconds=settings.orchestrator_interval_seconds)
        self.seconds = candle_seconds(settings.candle_granularity)
        self.candle = timedelta(seconds=self.seconds)
        self.rules = EligibilityRules(
            min_confidence=Decimal(str(settings.bridge_min_confidence)),
            max_age=timedelta(seconds=settings.bridge_signal_max_age_seconds),
        )
        self.terms = PricingTerms(
            amount_usd=settings.trade_amount_usd,
            stop_loss_percent=settings.stop_loss_percent,
            take_profit_percent=settings.take_profit_percent,
            position_size_percent=settings.position_size_percent,
        )
        self.exit_rules = ExitRules(max_holding=exit_rules_max_holding(settings))
        self.cash = settings.paper_starting_cash_usd
        self.positions: dict[str, Position] = {}
        self.pending: list[_Pending] = []
        self.dispatched: list[datetime] = []
        self.trades: list[Trade] = []
        self.skipped: Counter[str] = Counter()
        self.recommendations = 0
        self.cancelled = 0
        self.next_id = 1
        self.signal_id = 1
        # Per symbol: candle start -> Candle, and the sorted starts (for "the last candle closed by t").
        self.candles: dict[str, dict[int, Candle]] = {}
        self.starts: dict[str, np.ndarray] = {}
        for symbol, frame in candles_by_symbol.items():
            rows = frame.sort_values("timestamp")
            by_start = {
                int(t): Candle(
                    int(t), self.seconds, market_price(o), market_price(h), market_price(lo), market_price(c)
                )
                for t, o, h, lo, c in zip(
                    rows["timestamp"], rows["open"], rows["high"], rows["low"], rows["close"], strict=True
                )
            }
            self.candles[symbol] = by_start
            self.starts[symbol] = np.array(sorted(by_start), dtype=np.int64)

    def last_closed(self, symbol: str, now: datetime) -> Candle | None:
        starts = self.starts.get(symbol)
        if starts is None or len(starts) == 0:
            return None
        i = int(np.searchsorted(starts, int(now.timestamp()) - self.seconds, side="right")) - 1
        return self.candles[symbol][int(starts[i])] if i >= 0 else None

    def equity(self, now: datetime) -> tuple[Decimal, Decimal]:
        """(cash + holdings, holdings) valued at the last closes by ``now``."""
        invested = Decimal(0)
        for symbol, position in self.positions.items():
            last = self.last_closed(symbol, now)
            if last is not None:
                invested += position.quantity * last.close
        return self.cash + invested, invested

    # --- 1. protective exits (the executor's ManagePositions) ---
    def manage_positions(self, now: datetime) -> None:
        for symbol in sorted(self.positions):
            position = self.positions[symbol]
            last = self.last_closed(symbol, now)
            closing = [last] if last is not None else []
            decision = decide_exit(position, closing, now, self.exit_rules, last.close if last else None)
            if decision is None:
                continue
            rec_id = self._new_id()
            self.recommendations += 1
            order = OrderRequest(
                recommendation_id=rec_id,
                client_order_id=str(rec_id),
                symbol=symbol,
                side=OrderSide.SELL,
                quote_size=Decimal(0),
                base_size=position.quantity,
                exit_reason=decision.reason,
                market_price=decision.market_price,
            )
            self._fill(order, decision.market_price, now)

    # --- 3. the bridge ---
    def bridge(self, decisions: list[Decision], now: datetime) -> None:
        signals = []
        for d in decisions:
            signals.append(
                TradingSignal(
                    id=self.signal_id,
                    symbol=d.symbol,
                    signal_type=d.signal_type,
                    confidence=d.confidence,
                    price=d.price,
                    created_at=now,
                    processed=False,
                    is_mock=True,
                )
            )
            self.signal_id += 1
        book = PositionBook(held={s: p.quantity for s, p in self.positions.items()})
        for p in self.pending:
            book.written(p.proposal.signal_type.side or OrderSide.BUY, p.proposal.symbol)
        for signal in sorted(signals, key=admission_order):
            reason = skip_reason(signal, self.rules, now)
            if reason is None:
                reason = book.refusal(signal.signal_type, signal.symbol, self.settings.max_open_positions)
            proposal = None
            if reason is None:
                proposal = propose(signal, self.terms, now, held=book.held.get(signal.symbol))
                if proposal.levels.amount_crypto <= 0:
                    reason = "order_too_small"
            if reason is not None or proposal is None:
                if signal.signal_type != SignalType.HOLD:
                    self.skipped[reason or "skipped"] += 1
                continue
            book.written(proposal.signal_type, proposal.symbol)
            self.pending.append(_Pending(self._new_id(), proposal))
            self.recommendations += 1

    # --- 4. the orchestrator ---
    def orchestrate(self, now: datetime) -> int:
        window = timedelta(seconds=self.settings.trade_cap_window_seconds)
        expired_before = now - timedelta(seconds=self.settings.orchestrator_pending_window_seconds)
        kept = [p for p in self.pending if p.proposal.created_at >= expired_before]
        self.cancelled += len(self.pending) - len(kept)
        self.pending = kept
        self.dispatched = [t for t in self.dispatched if t > now - window]
        room = max(
            0, min(self.settings.max_trades_per_window, self.settings.max_trades_per_window - len(self.dispatched))
        )
        best = sorted(self.pending, key=lambda p: (-p.proposal.confidence, p.proposal.created_at, p.id))[:room]
        for chosen in best:
            self.pending.remove(chosen)
            self.dispatched.append(now)
            proposal = chosen.proposal
            side = proposal.signal_type.side or OrderSide.BUY
            last = self.last_closed(proposal.symbol, now)
            order = OrderRequest(
                recommendation_id=chosen.id,
                client_order_id=str(chosen.id),
                symbol=proposal.symbol,
                side=side,
                quote_size=proposal.levels.amount_usd,
                base_size=proposal.levels.amount_crypto,
                stop_loss=proposal.levels.stop_loss,
                take_profit=proposal.levels.take_profit,
                exit_reason=ExitReason.SIGNAL,
            )
            self._fill(order, last.close if last is not None else Decimal(0), now)
        return len(self.pending)

    def _fill(self, order: OrderRequest, price: Decimal, now: datetime) -> None:
        position = self.positions.get(order.symbol)
        settled = settle_paper_order(
            order,
            market_price=price,
            position=position,
            cash=self.cash,
            now=now,
            slippage_bps=self.settings.paper_slippage_bps,
            fee_rate=self.settings.paper_taker_fee_rate,
            mode=ExecutionMode.PAPER,
        )
        outcome = settled.outcome
        if outcome.status != OrderStatus.EXECUTED:
            self.trades.append(
                Trade(
                    now,
                    order.symbol,
                    order.side,
                    Decimal(0),
                    price,
                    Decimal(0),
                    self.cash,
                    OrderStatus.FAILED,
                    f"{outcome.error_code}: {outcome.error_message}",
                    recommendation_id=order.recommendation_id,
                )
            )
            return
        self.cash = settled.cash
        size, fill_price, fee = (
            outcome.filled_size or Decimal(0),
            outcome.average_price or price,
            outcome.fees or Decimal(0),
        )
        if settled.opened is not None:
            self.positions[order.symbol] = settled.opened
            self.trades.append(
                Trade(
                    now,
                    order.symbol,
                    OrderSide.BUY,
                    size,
                    fill_price,
                    fee,
                    self.cash,
                    OrderStatus.EXECUTED,
                    recommendation_id=order.recommendation_id,
                    stop_loss=settled.opened.stop_loss,
                    take_profit=settled.opened.take_profit,
                )
            )
        elif settled.closed is not None:
            del self.positions[order.symbol]
            closed = settled.closed
            self.trades.append(
                Trade(
                    now,
                    order.symbol,
                    OrderSide.SELL,
                    size,
                    fill_price,
                    fee,
                    self.cash,
                    OrderStatus.EXECUTED,
                    pnl=closed.realized_pnl,
                    exit_reason=closed.reason.value,
                    held_hours=closed.position.held_for(now),
                    recommendation_id=order.recommendation_id,
                )
            )

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def run_backtest(
    candles_by_symbol: Mapping[str, pd.DataFrame],
    model: LoadedModel,
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
    start: datetime | None = None,
) -> BacktestResult:
    """The replay's pipeline over ``candles_by_symbol`` (hourly), from the first candle closing after ``start``."""
    decisions: list[Decision] = []
    for symbol, candles in candles_by_symbol.items():
        decisions.extend(decisions_for_candles(symbol, candles, model, settings))
    bar = timedelta(hours=1)
    if start is not None:  # decisions whose bar closes after ``start`` + 1 h (hourly: candles starting at ``start``)
        decisions = [d for d in decisions if d.candle_time >= start]
    decisions.sort(key=lambda d: (d.candle_time, d.symbol))
    by_close: dict[datetime, list[Decision]] = {}
    for d in decisions:
        by_close.setdefault(d.candle_time + bar, []).append(d)
    sim = _Simulation(candles_by_symbol, settings)
    # The replay's time line: every candle (of any symbol) that closes at or after the first decision's bar.
    first_close = int((decisions[0].candle_time + bar).timestamp()) if decisions else None
    timeline = sorted(
        {
            datetime.fromtimestamp(int(t), UTC)
            for frame in candles_by_symbol.values()
            for t in frame["timestamp"]
            if first_close is not None and int(t) + sim.seconds >= first_close
        }
    )
    equity_points: dict[datetime, Decimal] = {}
    invested_points: dict[datetime, Decimal] = {}
    for i, candle_start in enumerate(timeline):
        now = candle_start + sim.candle
        sim.manage_positions(now)
        sim.bridge(by_close.get(now, []), now)
        for when in [now + sim.step * k for k in range(max(1, int(sim.candle / sim.step)))]:
            if sim.orchestrate(when) == 0:
                break
        equity_points[now], invested_points[now] = sim.equity(now)
        if progress is not None and (i % 500 == 0 or i == len(timeline) - 1):
            progress(i + 1, len(timeline))

    equity = pd.Series({t: float(v) for t, v in equity_points.items()}, dtype=float).sort_index()
    bench = buy_and_hold(candles_by_symbol, float(settings.paper_starting_cash_usd), equity.index, sim.seconds)
    invested = pd.Series({t: float(v) for t, v in invested_points.items()}, dtype=float).sort_index()
    result = BacktestResult(
        equity=equity,
        buy_and_hold=bench,
        trades=sim.trades,
        decisions=decisions,
        invested=invested,
        starting_cash=settings.paper_starting_cash_usd,
        skipped_signals=sim.skipped,
        recommendations=sim.recommendations,
        cancelled=sim.cancelled,
    )
    result.metrics = metrics(result, float(settings.paper_starting_cash_usd))
    return result


def buy_and_hold(
    candles_by_symbol: Mapping[str, pd.DataFrame], cash: float, index: pd.Index, seconds: int = HOUR
) -> pd.Series:
    """Equal weights in every symbol at its first close, held to the end (valued on ``index``; candles of
    ``seconds``)."""
    if len(index) == 0 or not candles_by_symbol:
        return pd.Series(dtype=float)
    share = cash / len(candles_by_symbol)
    total = pd.Series(0.0, index=index)
    for candles in candles_by_symbol.values():
        closes = pd.Series(
            candles["close"].astype(float).to_numpy(),
            index=[datetime.fromtimestamp(int(t) + seconds, UTC) for t in candles["timestamp"]],
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
    held = [t.held_hours for t in closed if t.held_hours is not None]
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
        "average_holding_hours": round(sum(held) / len(held), 2) if held else None,
        "exits": dict(Counter(t.exit_reason for t in closed).most_common()),
        "recommendations": result.recommendations,
        "refused_recommendations": len(result.trades) - len(executed),
        "refused_share": round((len(result.trades) - len(executed)) / result.recommendations, 6)
        if result.recommendations
        else 0.0,
        "cancelled_recommendations": result.cancelled,
        "skipped_signals": dict(result.skipped_signals.most_common()),
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
    """Executed exits (SELLs: signal, stop_loss, take_profit, time_limit) and refused orders, counted by reason
    (most frequent first)."""
    exits = Counter(
        t.exit_reason or "signal"
        for t in result.trades
        if t.status == OrderStatus.EXECUTED and t.side == OrderSide.SELL
    )
    refusals = Counter(f"{t.side}: {t.reason or 'refused'}" for t in result.trades if t.status != OrderStatus.EXECUTED)
    return {"exits": dict(exits.most_common()), "refusals": dict(refusals.most_common())}
