"""Production market data (MARKET_DATA_SOURCE=coinbase): before each generation cycle, the candles of the symbols
Coinbase ranks highest are brought up to date from its public market endpoints (the same client and insert code
as `cts ingest --source coinbase`), and the universe is chosen from Coinbase's product list.

The candles are those of CANDLE_GRANULARITY: hourly, or 5-minute in production (FIVE_MINUTE: the generator builds
hourly bars anchored at the latest closed 5-minute candle; `history_hours` of them is 12 candles an hour, paged by
the client under Coinbase's 350 candles per request). Only closed candles are stored (the current one is still
trading). A symbol seen for the first time gets ``history_hours`` of history. A failed refresh fails the cycle
loudly (logged, counted in the loop-error metric): the generator never quietly signals on candles it could not
update. Plain Python: the client and the store are injected."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from common.candles import GRANULARITY_SECONDS, closed_until
from common.clock import Clock
from common.errors import UnavailableError
from generator_svc.market_data import Candle, MarketDataError
from generator_svc.universe import Product, UniverseRules, top_tradable

log = logging.getLogger(__name__)
PRODUCTS_TTL_SECONDS = 60.0


class MarketClient(Protocol):
    async def list_products(self) -> list[Product]: ...
    async def candles(self, product_id: str, start: int, end: int, granularity: str = "ONE_HOUR") -> list[Candle]: ...


class CandleStore(Protocol):
    async def latest_candle_starts(self, symbols: Sequence[str]) -> dict[str, int]: ...
    async def store_candles(self, symbol: str, rows: Sequence[Sequence[Any]], source: str) -> int: ...


class CandleRefresher:
    def __init__(
        self,
        client: MarketClient,
        store: CandleStore,
        *,
        granularity: str,
        history_hours: int,
        rules: UniverseRules,
        clock: Clock,
    ) -> None:
        self.client = client
        self.store = store
        self.step = GRANULARITY_SECONDS[granularity]
        self.granularity = granularity
        self.history_hours = history_hours
        self.rules = rules
        self.clock = clock
        self._products: list[Product] | None = None
        self._products_at = 0.0

    async def products(self) -> list[Product]:
        """Coinbase's products (cached for a minute: one cycle asks twice). UNAVAILABLE when Coinbase fails."""
        if self._products is None or time.monotonic() - self._products_at > PRODUCTS_TTL_SECONDS:
            try:
                self._products = await self.client.list_products()
            except MarketDataError as exc:
                raise UnavailableError(f"Coinbase market data unavailable: {exc}") from exc
            self._products_at = time.monotonic()
        return self._products

    async def refresh(self) -> dict[str, int]:
        """Bring the candles of the tradable top symbols up to the last closed candle; new rows per symbol."""
        products = await self.products()
        # History is what we are about to fetch, so rank on tradability and volume alone here; the generator's
        # universe then also requires enough stored history.
        symbols = top_tradable(products, self.rules)
        end = closed_until(int(self.clock().timestamp()), self.granularity)  # the candle starting there is open
        latest = await self.store.latest_candle_starts(symbols)
        # the history to fetch is counted in hours, whatever the candles' granularity
        added: dict[str, int] = {}
        for symbol in symbols:
            since = (
                latest[symbol] + self.step if symbol in latest else end - self.history_hours * 3600
            )  # history is counted in hours whatever the granularity
            if since >= end:
                added[symbol] = 0
                continue
            try:
                candles = await self.client.candles(symbol, since, end, self.granularity)
            except MarketDataError as exc:
                raise UnavailableError(f"Coinbase candles for {symbol} unavailable: {exc}") from exc
            rows = [(c.start, c.open, c.high, c.low, c.close, c.volume) for c in candles if c.start < end]
            added[symbol] = await self.store.store_candles(symbol, rows, "coinbase") if rows else 0
        log.info("refreshed candles from Coinbase: %d new for %d symbols", sum(added.values()), len(symbols))
        return added
