"""Coinbase Advanced Trade public market data over httpx: products and candles.

`GET /market/products` and `GET /market/products/{id}/candles?start=&end=&granularity=` (start/end in Unix
seconds, newest first, at most 300 candles per request: longer ranges are paged). 429 (the body may be HTML) and
5xx are retried with exponential backoff and jitter; any other 4xx is an error."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from common.metrics import EXCHANGE_ERRORS
from generator_svc.universe import Product

GRANULARITY_SECONDS = {
    "ONE_MINUTE": 60,
    "FIVE_MINUTE": 300,
    "FIFTEEN_MINUTE": 900,
    "THIRTY_MINUTE": 1800,
    "ONE_HOUR": 3600,
    "TWO_HOUR": 7200,
    "SIX_HOUR": 21600,
    "ONE_DAY": 86400,
}
MAX_CANDLES_PER_REQUEST = 300


class MarketDataError(Exception):
    pass


@dataclass(frozen=True)
class Candle:
    start: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


def _dec(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value not in (None, "") else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


class CoinbaseMarketClient:
    def __init__(
        self,
        base_url: str,
        http: httpx.AsyncClient | None = None,
        *,
        max_retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http or httpx.AsyncClient(timeout=timeout)
        self.max_retries = max_retries
        self.backoff = backoff

    async def close(self) -> None:
        await self.http.aclose()

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        for attempt in range(self.max_retries + 1):
            try:
                response = await self.http.get(f"{self.base_url}{path}", params=params)
            except httpx.TransportError as exc:
                problem = type(exc).__name__
            else:
                if response.status_code == 429 or response.status_code >= 500:
                    problem = f"HTTP {response.status_code}"
                elif response.status_code >= 400:
                    raise MarketDataError(f"Coinbase answered HTTP {response.status_code} to GET {path}")
                else:
                    return response.json()
            EXCHANGE_ERRORS.labels("market_data").inc()
            if attempt == self.max_retries:
                raise MarketDataError(f"GET {path}: {problem} after {attempt + 1} attempts")
            await asyncio.sleep(self.backoff * 2**attempt * (0.5 + random.random()))
        raise AssertionError("unreachable")

    async def list_products(self) -> list[Product]:
        data = await self._get("/market/products", {"product_type": "SPOT"})
        products = []
        for p in data.get("products", []):
            price = _dec(p.get("price"))
            products.append(
                Product(
                    product_id=str(p.get("product_id", "")),
                    volume_24h_usd=_dec(p.get("volume_24h")) * price,
                    quote_currency=str(p.get("quote_currency_id", "")),
                    base_currency=str(p.get("base_currency_id", "")),
                    status=str(p.get("status", "")),
                    trading_disabled=bool(p.get("trading_disabled")),
                    cancel_only=bool(p.get("cancel_only")),
                    limit_only=bool(p.get("limit_only")),
                    view_only=bool(p.get("view_only")),
                )
            )
        return products

    async def candles(self, product_id: str, start: int, end: int, granularity: str = "ONE_HOUR") -> list[Candle]:
        """Candles with start <= candle start < end, oldest first (paged by 300)."""
        step = GRANULARITY_SECONDS[granularity]
        out: dict[int, Candle] = {}
        page_start = start
        while page_start < end:
            page_end = min(end, page_start + step * MAX_CANDLES_PER_REQUEST)
            data = await self._get(
                f"/market/products/{product_id}/candles",
                {"start": page_start, "end": page_end, "granularity": granularity},
            )
            for c in data.get("candles", []):
                candle = Candle(
                    int(c["start"]),
                    _dec(c["open"]),
                    _dec(c["high"]),
                    _dec(c["low"]),
                    _dec(c["close"]),
                    _dec(c["volume"]),
                )
                if start <= candle.start < end:
                    out[candle.start] = candle
            page_start = page_end
        return [out[k] for k in sorted(out)]
