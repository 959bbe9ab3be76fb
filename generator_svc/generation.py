"""One generation cycle (the Generate RPC, the 5-minute loop and the replay run this same code).

The store's candle granularity (CANDLE_GRANULARITY) decides what a cycle looks at:

- ONE_HOUR: for each symbol the latest hourly candle closed at or before ``as_of``, the 51 features on the last
  HISTORY_WINDOW candles; one signal per (symbol, candle), so a new signal once an hour.
- FIVE_MINUTE: the anchor is the latest 5-minute candle closed at or before ``as_of`` (as_of rounded down to a
  multiple of 5 minutes). For each symbol, the hourly bars ending at the anchor (generator_svc.bars: the bar ending
  12:05 aggregates the 5-minute candles of 11:05-12:05) from its 5-minute candles of the last
  FIVE_MINUTE_HISTORY_HOURS, the 51 features on the last HISTORY_WINDOW bars; the signal's candle_time is the last
  bar's start (anchor - 1 h) and its price the bar's close, so the key (symbol, candle_time) is (symbol, bar end)
  and every 5-minute cycle writes one new signal per symbol. A symbol without any 5-minute candle in the hour up to
  the anchor has no bar there and is skipped (stale), as is one with fewer than MIN_HISTORY + 1 bars.

Then model probabilities, the rule (BUY if P(buy) > BUY_THRESHOLD, SELL if P(sell) > SELL_THRESHOLD, else HOLD), and
one trading_signals row per key: a second run on the same candle (bar) writes nothing and returns the existing
signal. Candles are kept in memory between cycles (CandleCache: a cycle reads only the newer ones). Bars, features
and inference run in a worker thread, never on the event loop."""

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

from common.candles import candle_seconds, closed_until
from common.clock import Clock
from common.errors import FailedPreconditionError, NotFoundError
from common.lifecycle import ACTIONABLE_SIGNALS, SignalType
from common.metrics import SIGNALS
from generator_svc.bars import anchored_bars_array
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
# FIVE_MINUTE: the hours of 5-minute candles a cycle reads per symbol: HISTORY_WINDOW hourly bars and a day of room
# for hours without any candle (the production refresher keeps the same history).
FIVE_MINUTE_HISTORY_HOURS = HISTORY_WINDOW + 24
# FIVE_MINUTE: each cycle reads the last 15 minutes again, so a 5-minute candle stored after the cycle that first
# looked at its slot (a refresh that ran just before the candle closed) still reaches the later bars.
FIVE_MINUTE_REREAD_SECONDS = 15 * 60


class GeneratorStore(Protocol):
    granularity: str  # of the candles it reads (CANDLE_GRANULARITY)

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
    newer candles.

    ``span``: the seconds of candles before ``last_start`` the cache holds (a cold symbol reads them all);
    ``limit``: the most rows returned per symbol (the newest), or None for every row in the span; ``reread``: each
    cycle reads again the candles of the last ``reread`` seconds it already has (candles stored late)."""

    def __init__(
        self,
        store: GeneratorStore,
        *,
        span: int = COLD_FETCH_HOURS * HOUR,
        limit: int | None = HISTORY_WINDOW,
        reread: int = 0,
    ) -> None:
        self.store = store
        self.span = span
        self.limit = limit
        self.reread = reread
        self.entries: dict[str, _Cached] = {}

    async def window(self, symbols: Sequence[str], last_start: int) -> dict[str, np.ndarray]:
        """Per symbol, the candles starting at or before ``last_start``: the last ``limit`` of them, or (limit None)
        all those starting at or after ``last_start - span``."""
        need_from = last_start - self.span
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
            since = min(self.entries[s].loaded_to for s in warm) + 1 - self.reread
            newer = await self.store.candles(warm, since, last_start)
            keep_from = last_start - self.span
            for symbol in warm:
                entry = self.entries[symbol]
                cut = entry.loaded_to + 1 - self.reread  # rows from here on come from this read
                extra = newer[symbol]
                extra = extra[extra[:, 0] >= cut]
                kept = entry.rows[: np.searchsorted(entry.rows[:, 0], cut)] if self.reread else entry.rows
                rows = np.concatenate([kept, extra]) if len(extra) else kept
                rows = rows[np.searchsorted(rows[:, 0], keep_from) :]
                self.entries[symbol] = _Cached(rows, max(entry.loaded_from, keep_from), last_start)
        out = {}
        for symbol in symbols:
            rows = self.entries[symbol].rows
            end = int(np.searchsorted(rows[:, 0], last_start, side="right"))
            if self.limit is None:
                out[symbol] = rows[int(np.searchsorted(rows[:, 0], need_from)) : end]
            else:
                out[symbol] = rows[max(0, end - self.limit) : end]
        return out


def _predict(model: LoadedModel, candles: dict[str, np.ndarray]) -> tuple[pd.DataFrame, np.ndarray]:
    """CPU work, run in a worker thread: features of each symbol's last candle and the model's probabilities."""
    features = latest_features(candles)
    complete = features.dropna()
    probabilities = model.predict_proba(complete[list(FEATURE_NAMES)].to_numpy(dtype=np.float64))
    return complete, probabilities


def anchored_bars(candles: Mapping[str, np.ndarray], anchor_end: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """FIVE_MINUTE: each symbol's last HISTORY_WINDOW hourly bars ending at ``anchor_end`` as (n, 6) arrays in
    CANDLE_COLUMNS order (timestamp = bar start), and the reason for each symbol that has no usable bar set: no
    bar ends at the anchor (no 5-minute candle in the hour up to it), or too few bars for the features."""
    usable: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    for symbol, rows in candles.items():
        bars = anchored_bars_array(rows, anchor_end, HISTORY_WINDOW)
        if len(bars) == 0 or int(bars[-1, 0]) != anchor_end - HOUR:
            when = datetime.fromtimestamp(anchor_end, UTC).isoformat(timespec="seconds")
            skipped[symbol] = f"no 5-minute candle closed in the hour up to {when}"
        elif len(bars) < MIN_HISTORY + 1:
            skipped[symbol] = f"not enough candle history ({len(bars)} hourly bars < {MIN_HISTORY + 1})"
        else:
            usable[symbol] = bars[:, : len(CANDLE_COLUMNS)]
    return usable, skipped


def _anchored_predict(
    model: LoadedModel, candles: Mapping[str, np.ndarray], anchor_end: int
) -> tuple[dict[str, np.ndarray], dict[str, str], pd.DataFrame, np.ndarray]:
    """CPU work of a FIVE_MINUTE cycle, run in a worker thread: bars, then features and probabilities of the
    symbols that have a usable bar set."""
    usable, skipped = anchored_bars(candles, anchor_end)
    if not usable:
        return usable, skipped, pd.DataFrame(columns=list(FEATURE_NAMES), dtype=float), np.empty((0, 3))
    features, probabilities = _predict(model, usable)
    return usable, skipped, features, probabilities


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
        if store.granularity == "FIVE_MINUTE":
            self.anchored = True
            self.cache = CandleCache(
                store,
                span=FIVE_MINUTE_HISTORY_HOURS * HOUR - candle_seconds("FIVE_MINUTE"),
                limit=None,
                reread=FIVE_MINUTE_REREAD_SECONDS,
            )
        elif store.granularity == "ONE_HOUR":
            self.anchored = False
            self.cache = CandleCache(store)
        else:
            raise ValueError(f"the generator reads ONE_HOUR or FIVE_MINUTE candles, not {store.granularity}")
        self.known: set[str] = set()
        self.lock = asyncio.Lock()

    @staticmethod
    def last_closed_start(as_of: datetime) -> int:
        """Start time of the latest hourly candle closed at or before ``as_of``."""
        return (int(as_of.timestamp()) // HOUR - 1) * HOUR

    async def universe(self, last_start: int) -> tuple[list[str], dict[str, str]]:
        counts, volumes = await self.store.candidates(last_start)
        if self.anchored:  # the history rule counts hourly bars: a symbol's 5-minute candles in hours' worth
            step = candle_seconds(self.store.granularity)
            counts = {symbol: count * step // HOUR for symbol, count in counts.items()}
        products = await self.products() if self.products is not None else None
        if products is None:
            products = [Product(symbol, volumes.get(symbol, Decimal(0))) for symbol in counts]
        return select_universe(products, counts, self.config.universe)

    async def generate(self, symbols: Sequence[str] | None, as_of: datetime | None = None) -> GenerationResult:
        async with self.lock:  # one cycle at a time per process; replicas are kept apart by the unique key
            return await self._generate(symbols, as_of)

    async def _generate(self, symbols: Sequence[str] | None, as_of: datetime | None) -> GenerationResult:
        as_of = as_of or self.clock()
        if self.anchored:
            anchor = closed_until(int(as_of.timestamp()), self.store.granularity)
            last_start = anchor - candle_seconds(self.store.granularity)
            history_hours = FIVE_MINUTE_HISTORY_HOURS
        else:
            anchor = None
            last_start = self.last_closed_start(as_of)
            history_hours = COLD_FETCH_HOURS
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
                    f"no candle closed in the {history_hours} hours up to {as_of.isoformat(timespec='seconds')}"
                )
            elif anchor is None and len(frame) < MIN_HISTORY + 1:
                result.skipped[symbol] = f"not enough candle history ({len(frame)} < {MIN_HISTORY + 1})"
            else:
                usable[symbol] = frame
        if anchor is not None and usable:  # hourly bars ending at the anchor, then features and the model
            usable, stale, features, probabilities = await asyncio.to_thread(
                _anchored_predict, self.model, usable, anchor
            )
            result.skipped.update(stale)
        if symbols and not usable:
            reasons = "; ".join(f"{s}: {r}" for s, r in result.skipped.items())
            raise FailedPreconditionError(f"no signal possible: {reasons}")
        if not usable:
            return result
        if anchor is None:
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
