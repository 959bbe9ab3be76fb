"""Coinbase Advanced Trade public market data over httpx: products and candles.

`GET /market/products` and `GET /market/products/{id}/candles?start=&end=&granularity=` (start/end in Unix
seconds, newest first; Coinbase answers at most 350 candles per request, so longer ranges are paged by 300, for
hourly and 5-minute candles alike). 429 (the body may be HTML),
5xx and transport errors are retried by the shared policy (common.http_retry: bounded, exponential backoff with
jitter, Retry-After honoured); any other 4xx is an error at once. Answers are read into typed models: a candle
with a missing or malformed number, or an answer that is not JSON, is a MarketDataError (never a silent 0). A
product whose price or 24 h volume is empty or absent (Coinbase has no figure for it) cannot be ranked and is left
out of the product list; a malformed one is an error."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from pydantic import field_validator

from common.candles import GRANULARITY_SECONDS
from common.exchange_json import (
    ExchangeModel,
    MalformedResponse,
    Model,
    NonNegativeDecimal,
    PositiveDecimal,
    parse,
)
from common.http_retry import RetriesExhausted, RetryPolicy
from common.metrics import EXCHANGE_ERRORS
from generator_svc.universe import Product

log = logging.getLogger(__name__)

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


class _Candle(ExchangeModel):
    start: int
    open: PositiveDecimal
    high: PositiveDecimal
    low: PositiveDecimal
    close: PositiveDecimal
    volume: NonNegativeDecimal


class _Candles(ExchangeModel):
    candles: list[_Candle]


class _Product(ExchangeModel):
    product_id: str
    price: NonNegativeDecimal | None = None  # None: Coinbase has no figure ("" or absent)
    volume_24h: NonNegativeDecimal | None = None
    quote_currency_id: str = ""
    base_currency_id: str = ""
    status: str = ""
    trading_disabled: bool = False
    cancel_only: bool = False
    limit_only: bool = False
    view_only: bool = False

    @field_validator("price", "volume_24h", mode="before")
    @classmethod
    def _empty_is_unknown(cls, value: Any) -> Any:
        return None if value == "" else value


class _Products(ExchangeModel):
    products: list[_Product]


class CoinbaseMarketClient:
    def __init__(
        self,
        base_url: str,
        http: httpx.AsyncClient | None = None,
        *,
        max_retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        """``retry`` replaces the policy that ``max_retries`` and ``backoff`` describe (tests inject its sleep)."""
        self.base_url = base_url.rstrip("/")
        self.http = http or httpx.AsyncClient(timeout=timeout)
        self.retry = retry or RetryPolicy(max_retries=max_retries, backoff=backoff)

    async def close(self) -> None:
        await self.http.aclose()

    async def _get(self, model: type[Model], path: str, params: dict[str, Any] | None = None) -> Model:
        url = f"{self.base_url}{path}"
        try:
            response = await self.retry.send(
                lambda: self.http.get(url, params=params),
                what=f"GET {path}",
                on_problem=lambda _: EXCHANGE_ERRORS.labels("market_data").inc(),
            )
        except RetriesExhausted as exc:
            raise MarketDataError(str(exc)) from None
        if response.status_code >= 400:
            raise MarketDataError(f"Coinbase answered HTTP {response.status_code} to GET {path}")
        try:
            return parse(model, response.content)
        except MalformedResponse as exc:
            EXCHANGE_ERRORS.labels("market_data").inc()
            raise MarketDataError(f"GET {path}: malformed answer: {exc}") from None

    async def list_products(self) -> list[Product]:
        data = await self._get(_Products, "/market/products", {"product_type": "SPOT"})
        products = []
        unranked = []
        for p in data.products:
            if p.price is None or p.volume_24h is None:
                unranked.append(p.product_id)
                continue
            products.append(
                Product(
                    product_id=p.product_id,
                    volume_24h_usd=p.volume_24h * p.price,
                    quote_currency=p.quote_currency_id,
                    base_currency=p.base_currency_id,
                    status=p.status,
                    trading_disabled=p.trading_disabled,
                    cancel_only=p.cancel_only,
                    limit_only=p.limit_only,
                    view_only=p.view_only,
                )
            )
        if unranked:
            log.debug("%d products without a price or 24 h volume left out: %s", len(unranked), ", ".join(unranked))
        return products

    async def candles(self, product_id: str, start: int, end: int, granularity: str = "ONE_HOUR") -> list[Candle]:
        """Candles with start <= candle start < end, oldest first (paged by 300)."""
        step = GRANULARITY_SECONDS[granularity]
        out: dict[int, Candle] = {}
        page_start = start
        while page_start < end:
            page_end = min(end, page_start + step * MAX_CANDLES_PER_REQUEST)
            data = await self._get(
                _Candles,
                f"/market/products/{product_id}/candles",
                {"start": page_start, "end": page_end, "granularity": granularity},
            )
            for c in data.candles:
                if start <= c.start < end:
                    out[c.start] = Candle(c.start, c.open, c.high, c.low, c.close, c.volume)
            page_start = page_end
        return [out[k] for k in sorted(out)]
