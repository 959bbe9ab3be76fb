"""Coinbase Advanced Trade REST client (httpx) for the executor: orders, order status, accounts, products.

Every request carries a fresh JWT. 429 (the body may be HTML), 5xx and timeouts are retried with exponential
backoff and jitter, a bounded number of times, and then raise TransientExchangeError; 401/403 raise
ExchangeAuthError; other 4xx raise ExchangeRequestError. Messages never contain credentials or tokens."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from common.metrics import EXCHANGE_ERRORS
from executor_svc.coinbase_auth import CoinbaseCredentials, build_jwt

log = logging.getLogger(__name__)


class ExchangeError(Exception):
    pass


class TransientExchangeError(ExchangeError):
    """Rate limited, server error or timeout after the allowed retries: try again later with the same id."""


class ExchangeAuthError(ExchangeError):
    """401/403: the credentials were refused."""


class ExchangeRequestError(ExchangeError):
    """Another 4xx: the request itself is wrong."""


@dataclass(frozen=True)
class OrderAck:
    success: bool
    order_id: str
    error: str  # error_response.error when success is false
    message: str


@dataclass(frozen=True)
class OrderState:
    order_id: str
    status: str
    filled_size: Decimal
    average_price: Decimal
    total_fees: Decimal


@dataclass(frozen=True)
class ProductRules:
    base_increment: Decimal
    base_min_size: Decimal
    quote_min_size: Decimal
    price: Decimal


def _dec(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value not in (None, "") else Decimal(0)
    except ArithmeticError:
        return Decimal(0)


class CoinbaseClient:
    def __init__(
        self,
        base_url: str,
        credentials: CoinbaseCredentials,
        *,
        timeout: float = 10.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.max_retries = max_retries
        self.backoff = backoff
        self.http = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def close(self) -> None:
        await self.http.aclose()

    async def _request(self, method: str, path: str, *, json: Any = None, params: Any = None) -> Any:
        url = f"{self.base_url}{path}"
        for attempt in range(self.max_retries + 1):
            token = build_jwt(self.credentials, method, url)
            try:
                response = await self.http.request(
                    method, url, json=json, params=params, headers={"Authorization": f"Bearer {token}"}
                )
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                kind, detail = "timeout" if isinstance(exc, httpx.TimeoutException) else "network", type(exc).__name__
            else:
                if response.status_code in (401, 403):
                    EXCHANGE_ERRORS.labels("auth").inc()
                    raise ExchangeAuthError(f"Coinbase refused the credentials (HTTP {response.status_code})")
                if response.status_code == 429 or response.status_code >= 500:
                    kind, detail = (
                        ("rate_limited" if response.status_code == 429 else "server"),
                        f"HTTP {response.status_code}",
                    )
                elif response.status_code >= 400:
                    EXCHANGE_ERRORS.labels("request").inc()
                    raise ExchangeRequestError(f"Coinbase answered HTTP {response.status_code} to {method} {path}")
                else:
                    try:
                        return response.json()
                    except ValueError:
                        kind, detail = "bad_response", "body is not JSON"
            EXCHANGE_ERRORS.labels(kind).inc()
            if attempt == self.max_retries:
                raise TransientExchangeError(f"Coinbase {method} {path}: {detail} after {attempt + 1} attempts")
            delay = self.backoff * (2**attempt) * (0.5 + random.random())
            log.info("Coinbase %s %s: %s, retrying in %.2fs", method, path, detail, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def create_market_order(
        self, client_order_id: str, product_id: str, side: str, *, quote_size: Decimal | None, base_size: Decimal | None
    ) -> OrderAck:
        config = {"quote_size": format(quote_size, "f")} if side == "BUY" else {"base_size": format(base_size, "f")}
        body = {
            "client_order_id": client_order_id,
            "product_id": product_id,
            "side": side,
            "order_configuration": {"market_market_ioc": config},
        }
        data = await self._request("POST", "/orders", json=body)
        if data.get("success"):
            order_id = (data.get("success_response") or {}).get("order_id") or data.get("order_id", "")
            return OrderAck(True, str(order_id), "", "")
        error = data.get("error_response") or {}
        return OrderAck(
            False,
            "",
            str(error.get("error") or data.get("failure_reason") or "UNKNOWN_FAILURE_REASON"),
            str(error.get("message") or error.get("error_details") or ""),
        )

    async def get_order(self, order_id: str) -> OrderState:
        data = await self._request("GET", f"/orders/historical/{order_id}")
        order = data.get("order") or {}
        return OrderState(
            order_id=str(order.get("order_id", order_id)),
            status=str(order.get("status", "UNKNOWN")),
            filled_size=_dec(order.get("filled_size")),
            average_price=_dec(order.get("average_filled_price")),
            total_fees=_dec(order.get("total_fees")),
        )

    async def available_balance(self, currency: str) -> Decimal:
        data = await self._request("GET", "/accounts", params={"limit": 250})
        total = Decimal(0)
        for account in data.get("accounts", []):
            if account.get("currency") == currency:
                total += _dec((account.get("available_balance") or {}).get("value"))
        return total

    async def product(self, product_id: str) -> ProductRules:
        data = await self._request("GET", f"/products/{product_id}")
        return ProductRules(
            base_increment=_dec(data.get("base_increment")) or Decimal("0.00000001"),
            base_min_size=_dec(data.get("base_min_size")),
            quote_min_size=_dec(data.get("quote_min_size")),
            price=_dec(data.get("price")),
        )

    async def check_auth(self) -> None:
        """An authenticated call (GET /accounts); raises on failure."""
        await self._request("GET", "/accounts", params={"limit": 1})
