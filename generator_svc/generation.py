"""One generation cycle (the Generate RPC and the 5-minute loop run this same code).

For each symbol: the latest candle closed at or before ``as_of``, the 51 features on the last HISTORY_WINDOW candles,
model probabilities, the rule (BUY if P(buy) > BUY_THRESHOLD, SELL if P(sell) > SELL_THRESHOLD, else HOLD), and one
trading_signals row per (symbol, candle): a second run on the same candle writes nothing and returns the existing
signal. Features and inference run in a worker thread, never on the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
import pandas as pd

from common.clock import Clock
from common.errors import FailedPreconditionError, NotFoundError
from common.lifecycle import ACTIONABLE_SIGNALS, SignalType
from common.metrics import SIGNALS
from generator_svc.features import CANDLE_COLUMNS, FEATURE_NAMES, HISTORY_WINDOW, MIN_HISTORY, latest_features
from generator_svc.model_store import LoadedModel
from generator_svc.regime import regime_of
from generator_svc.repository import SignalRow
from generator_svc.signal_rule import decide_from_probabilities, threshold_for, to_probability
from generator_svc.universe import Product, UniverseRules, select_universe

log = logging.getLogger(__name__)
HOUR = 3600  # the features are computed on hourly bars (the model is defined on them)
# Candles fetched per symbol on a cold cache: HISTORY_WINDOW rows plus room for gaps.
COLD_FETCH_HOURS = 3 * HISTORY_WINDOW


class GeneratorStore(Protocol):
    async def known_symbols(self, symbols: Sequence[str]) -> set[str]: ...
    async def candidates(self, until_start_time: int) -> tuple[dict[str, int], dict[str, Decimal]]: ...
    async def candles(self, symbols: Sequence[str], since: int | None, until: int) -> dict[str, Any]: ...
    async def save_signals(
        self, rows: Sequence[dict[str, Any]]
    ) -> tuple[dict[tuple[str, datetime], SignalRow], set[tuple[str, datetime]]]: ...


@dataclass(frozen=True)
class GeneratorConfig:
    buy_threshold: float
    sell_threshold: float
    universe: UniverseRules
    data_source: str  # coinbase / database / replay
    is_mock: bool
    # Replay: timestamp/created_at = the market time of the cycle (as_of), not the wall clock.
    market_time_stamps: bool = False


@dataclass
class GenerationResult:
    signals: list[tuple[SignalRow, bool]] = field(default_factory=list)  # (row, created by this call)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def created_actionable_ids(self) -> list[int]:
        return [row.id for row, created in self.signals if created and row.signal_type in ACTIONABLE_SIGNALS]

    def counts_by_type(self) -> dict[str, int]:
        """New signals of this call by type (BUY, SELL, HOLD order), for the one INFO line per cycle."""
        counts = {kind.value: 0 for kind in (SignalType.BUY, SignalType.SELL, SignalType.HOLD)}
        for row, created in self.signals:
            if created:
                counts[row.signal_type] = counts.get(row.signal_type, 0) + 1
        return {kind: count for kind, count in counts.items() if count}


@dataclass
class _Cached:
    rows: np.ndarray  # (n, 6) in CANDLE_COLUMNS order, oldest first
    loaded_from: int  # every candle with start >= loaded_from and <= loaded_to is in rows
    loaded_to: int


class CandleCache:
    """Keeps the recent candles of each symbol in memory as one float array each; each cycle fetches only the
    newer candles."""

    def __init__(self, store: GeneratorStore) -> None:
        self.store = store
        self.entries: dict[str, _Cached] = {}

    async def window(self, symbols: Sequence[str], last_start: int) -> dict[str, np.ndarray]:
        """Up to HISTORY_WINDOW candles per symbol, the last one starting at or before ``last_start``."""
        need_from = last_start - COLD_FETCH_HOURS * HOUR
        cold = [
            s
            for s in symbols
            if s not in self.entries
            or self.entries[s].loaded_from > need_from
            or self.entries[s].loaded_to > last_start + HOUR * HISTORY_WINDOW
        ]
        warm = [s for s in symbols if s not in cold and self.entries[s].loaded_to < last_start]
        if cold:
            fresh = await self.store.candles(cold, need_from, last_start)
            for symbol in cold:
                self.entries[symbol] = _Cached(fresh[symbol], need_from, last_start)
        if warm:
            since = min(self.entries[s].loaded_to for s in warm) + 1
            newer = await self.store.candles(warm, since, last_start)
            keep_from = last_start - COLD_FETCH_HOURS * HOUR
            for symbol in warm:
                entry = self.entries[symbol]
                extra = newer[symbol]
                extra = extra[extra[:, 0] > entry.loaded_to]
                rows = np.concatenate([entry.rows, extra]) if len(extra) else entry.rows
                rows = rows[np.searchsorted(rows[:, 0], keep_from) :]
                self.entries[symbol] = _Cached(rows, max(entry.loaded_from, keep_from), last_start)
        out = {}
        for symbol in symbols:
            rows = self.entries[symbol].rows
            end = int(np.searchsorted(rows[:, 0], last_start, side="right"))
            out[symbol] = rows[max(0, end - HISTORY_WINDOW) : end]
        return out


def _predict(model: LoadedModel, candles: dict[str, np.ndarray]) -> tuple[pd.DataFrame, np.ndarray]:
    """CPU work, run in a worker thread: features of each symbol's last candle and the model's probabilities."""
    features = latest_features(candles)
    complete = features.dropna()
    probabilities = model.predict_proba(complete[list(FEATURE_NAMES)].to_numpy(dtype=np.float64))
    return complete, probabilities


class SignalGenerator:
    def __init__(
        self,
        model: LoadedModel,
        store: GeneratorStore,
        config: GeneratorConfig,
        clock: Clock,
        products: Callable[[], Awaitable[list[Product] | None]] | None = None,
    ) -> None:
        self.model = model
        self.store = store
        self.config = config
        self.clock = clock
        self.products = products  # Coinbase products (production); None: derive the universe from the candles
        self.cache = CandleCache(store)
        self.known: set[str] = set()
        self.lock = asyncio.Lock()

    @staticmethod
    def last_closed_start(as_of: datetime) -> int:
        """Start time of the latest hourly candle closed at or before ``as_of``."""
        return (int(as_of.timestamp()) // HOUR - 1) * HOUR

    async def universe(self, last_start: int) -> tuple[list[str], dict[str, str]]:
        counts, volumes = await self.store.candidates(last_start)
        products = await self.products() if self.products is not None else None
        if products is None:
            products = [Product(symbol, volumes.get(symbol, Decimal(0))) for symbol in counts]
        return select_universe(products, counts, self.config.universe)

    async def generate(self, symbols: Sequence[str] | None, as_of: datetime | None = None) -> GenerationResult:
        async with self.lock:  # one cycle at a time per process; replicas are kept apart by the unique key
            return await self._generate(symbols, as_of)

    async def _generate(self, symbols: Sequence[str] | None, as_of: datetime | None) -> GenerationResult:
        as_of = as_of or self.clock()
        last_start = self.last_closed_start(as_of)
        result = GenerationResult()
        if symbols:
            wanted = list(dict.fromkeys(symbols))
            unseen = [s for s in wanted if s not in self.known]
            if unseen:  # candles are never deleted: a symbol known once stays known
                self.known |= await self.store.known_symbols(unseen)
            unknown = [s for s in wanted if s not in self.known]
            if unknown:
                raise NotFoundError(f"unknown symbol(s), no candles at all: {', '.join(unknown[:10])}")
        else:
            wanted, excluded = await self.universe(last_start)
            log.debug("universe: %s (excluded %d)", wanted, len(excluded))
        if not wanted:
            return result
        candles = await self.cache.window(wanted, last_start)
        usable = {}
        for symbol in wanted:
            frame = candles[symbol]
            if len(frame) == 0:
                result.skipped[symbol] = (
                    f"no candle closed in the {COLD_FETCH_HOURS} hours up to {as_of.isoformat(timespec='seconds')}"
                )
            elif len(frame) < MIN_HISTORY + 1:
                result.skipped[symbol] = f"not enough candle history ({len(frame)} < {MIN_HISTORY + 1})"
            else:
                usable[symbol] = frame
        if symbols and not usable:
            reasons = "; ".join(f"{s}: {r}" for s, r in result.skipped.items())
            raise FailedPreconditionError(f"no signal possible: {reasons}")
        if not usable:
            return result
        features, probabilities = await asyncio.to_thread(_predict, self.model, usable)
        for symbol in usable:
            if symbol not in features.index:
                result.skipped[symbol] = "features incomplete (gaps or missing values)"
        rows = [
            self._row(symbol, usable[symbol], dict(zip(features.columns, values, strict=True)), probs, as_of)
            for symbol, values, probs in zip(features.index, features.to_numpy().tolist(), probabilities, strict=True)
        ]
        saved, created = await self.store.save_signals(rows)
        for row in rows:
            key = (row["symbol"], row["candle_time"])
            signal = saved[key]
            fresh = key in created
            result.signals.append((signal, fresh))
            if fresh:
                SIGNALS.labels(signal.signal_type).inc()
                # BUY and SELL are what an operator greps for; HOLD (most rows) only at DEBUG.
                log.log(
                    logging.DEBUG if signal.signal_type == SignalType.HOLD else logging.INFO,
                    "Generated %s signal for %s at %s (confidence %s, P(buy)=%s P(sell)=%s, model %s)",
                    signal.signal_type,
                    signal.symbol,
                    signal.price,
                    signal.confidence,
                    signal.buy_probability,
                    signal.sell_probability,
                    signal.model,
                    extra={"signal_id": signal.id, "symbol": signal.symbol, "signal_type": signal.signal_type},
                )
        log.info(
            "Cycle as of %s: %d signal(s) for %d symbol(s) (%s), %d skipped",
            as_of.isoformat(timespec="seconds"),
            sum(1 for _, fresh in result.signals if fresh),
            len(wanted),
            ", ".join(f"{kind} {count}" for kind, count in result.counts_by_type().items()) or "none new",
            len(result.skipped),
        )
        return result

    def _row(
        self, symbol: str, candles: np.ndarray, features: Mapping[str, float], probs: np.ndarray, as_of: datetime
    ) -> dict[str, Any]:
        by_class = dict(zip(self.model.classes, (float(p) for p in probs), strict=True))
        signal_type, confidence = decide_from_probabilities(
            by_class, self.config.buy_threshold, self.config.sell_threshold
        )
        last = dict(zip(CANDLE_COLUMNS, candles[-1].tolist(), strict=True))
        candle_time = datetime.fromtimestamp(int(last["timestamp"]), UTC)
        now = as_of if self.config.market_time_stamps else self.clock()
        p_buy = to_probability(by_class["BUY"])
        return {
            "symbol": symbol,
            "price": Decimal(repr(float(last["close"]))).quantize(Decimal("0.00000001")),
            "signal_type": signal_type,
            "model": self.model.file_name,
            "confidence": confidence,
            "threshold": threshold_for(signal_type, self.config.buy_threshold, self.config.sell_threshold),
            "regime": regime_of(features),
            "model_version": self.model.version,
            "features_used": len(FEATURE_NAMES),
            "xgboost_confidence": max(to_probability(p) for p in by_class.values()),
            "data_source": self.config.data_source,
            "is_mock": self.config.is_mock,
            "prediction": p_buy,
            "candle_time": candle_time,
            "buy_probability": p_buy,
            "sell_probability": to_probability(by_class["SELL"]),
            "hold_probability": to_probability(by_class["HOLD"]),
            "timestamp": now,
            "created_at": now,
        }
