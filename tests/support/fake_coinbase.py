"""A local fake of Coinbase Advanced Trade for tests (never shipped): a real HTTP server that verifies every JWT
as Coinbase does and implements the endpoints the executor uses, with injectable faults, plus the public market
data endpoints (products, candles) the generator and `cts ingest --source coinbase` use.

JWT checks: ES256 signature with the registered public key, alg, kid, typ, iss = "cdp", sub = key name, nbf/exp
window, and uri = "<METHOD> <host><path>" of the actual request. Orders are deduplicated by client_order_id."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

API = "/api/v3/brokerage"


@dataclass
class FakeCoinbase:
    key_name: str = "organizations/org-test/apiKeys/key-test"
    private_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    balances: dict[str, Decimal] = field(default_factory=lambda: {"USD": Decimal(100000), "BTC": Decimal(1)})
    prices: dict[str, Decimal] = field(default_factory=lambda: {"BTC-USD": Decimal("9000")})
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # by order id
    by_client_id: dict[str, str] = field(default_factory=dict)
    order_posts: int = 0
    # next responses: "429", "500", "401", "slow", "reject:<ERR>", "open" (an order accepted but not filled yet)
    faults: deque[str] = field(default_factory=deque)
    open_fills: dict[str, dict[str, str]] = field(default_factory=dict)
    list_requests: int = 0
    seen_tokens: list[str] = field(default_factory=list)
    jwt_failures: list[str] = field(default_factory=list)
    # Public market data (no JWT): products as Coinbase lists them, hourly candles per product as
    # (start, open, high, low, close, volume) strings, and the candle requests seen (product, start, end).
    market_products: list[dict[str, Any]] = field(default_factory=list)
    market_candles: dict[str, list[tuple[int, str, str, str, str, str]]] = field(default_factory=dict)
    market_candles_5m: dict[str, list[tuple[int, str, str, str, str, str]]] = field(default_factory=dict)
    candle_requests: list[tuple[str, int, int]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def private_key_pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{API}"

    def start(self) -> FakeCoinbase:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self, "GET")

            def do_POST(self) -> None:
                fake.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def verify(self, request: BaseHTTPRequestHandler, method: str) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return "missing bearer token"
        token = header.removeprefix("Bearer ")
        self.seen_tokens.append(token)
        try:
            head = jwt.get_unverified_header(token)
            if head.get("alg") != "ES256" or head.get("kid") != self.key_name or head.get("typ") != "JWT":
                return "bad header"
            if not head.get("nonce"):
                return "missing nonce"
            claims = jwt.decode(
                token,
                self.private_key.public_key(),
                algorithms=["ES256"],
                options={"require": ["exp", "nbf"]},
                leeway=5,
            )
        except jwt.PyJWTError as exc:
            return f"invalid token: {type(exc).__name__}"
        if claims.get("iss") != "cdp" or claims.get("sub") != self.key_name:
            return "bad iss/sub"
        if claims["exp"] - claims["nbf"] > 120:
            return "token lives too long"
        host = request.headers.get("Host", "")
        expected = f"{method} {host}{urlsplit(request.path).path}"
        if claims.get("uri") != expected:
            return f"uri claim {claims.get('uri')!r} != {expected!r}"
        return None

    def reply(
        self, request: BaseHTTPRequestHandler, status: int, body: Any, content_type: str = "application/json"
    ) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def fault_replied(self, request: BaseHTTPRequestHandler, fault: str) -> bool:
        """Play an injected fault; True when it was the whole answer ("slow" only delays the real one)."""
        if fault == "429":
            self.reply(request, 429, "<html><body>Too Many Requests</body></html>", "text/html")
        elif fault == "500":
            self.reply(request, 500, {"error": "INTERNAL"})
        elif fault == "401":
            self.reply(request, 401, {"error": "UNAUTHENTICATED"})
        else:
            if fault == "slow":
                time.sleep(2.0)
            return False
        return True

    def handle_market(self, request: BaseHTTPRequestHandler, path: str) -> None:
        """GET /market/products and /market/products/{id}/candles (public: no JWT), with the same faults."""
        if self.fault_replied(request, self.faults.popleft() if self.faults else ""):
            return
        if path == "/market/products":
            self.reply(request, 200, {"products": self.market_products, "num_products": len(self.market_products)})
            return
        parts = path.split("/")  # ["", "market", "products", id, "candles"]
        if len(parts) != 5 or parts[4] != "candles" or parts[3] not in self.market_candles:
            self.reply(request, 404, {"error": "NOT_FOUND", "message": "product not found"})
            return
        query = dict(parse_qsl(urlsplit(request.path).query))
        try:
            start, end = int(query["start"]), int(query["end"])
        except (KeyError, ValueError):
            self.reply(request, 400, {"error": "INVALID_ARGUMENT", "message": "start and end are required"})
            return
        step = {"ONE_HOUR": 3600, "FIVE_MINUTE": 300}.get(query.get("granularity", ""))
        if step is None:
            self.reply(request, 400, {"error": "INVALID_ARGUMENT", "message": "unsupported granularity"})
            return
        if (end - start) // step > 350:  # Coinbase refuses more than 350 candles per request
            self.reply(request, 400, {"error": "INVALID_ARGUMENT", "message": "too many candles requested"})
            return
        self.candle_requests.append((parts[3], start, end))
        series = self.market_candles[parts[3]] if step == 3600 else self.market_candles_5m.get(parts[3], [])
        rows = [c for c in series if start <= c[0] <= end]
        candles = [
            {"start": str(t), "open": o, "high": h, "low": lo, "close": c, "volume": v}
            for t, o, h, lo, c, v in sorted(rows, reverse=True)  # newest first, as Coinbase answers
        ]
        self.reply(request, 200, {"candles": candles})

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(request.path).path.removeprefix(API)
        if method == "GET" and path.startswith("/market/"):
            self.handle_market(request, path)
            return
        problem = self.verify(request, method)
        if problem:
            self.jwt_failures.append(problem)
            self.reply(request, 401, {"error": "UNAUTHENTICATED", "message": problem})
            return
        fault = self.faults.popleft() if self.faults else ""
        if self.fault_replied(request, fault):
            return
        path = urlsplit(request.path).path.removeprefix(API)
        if method == "GET" and path == "/accounts":
            accounts = [
                {"currency": c, "available_balance": {"value": str(v), "currency": c}} for c, v in self.balances.items()
            ]
            self.reply(request, 200, {"accounts": accounts, "has_next": False})
        elif method == "GET" and path.startswith("/products/"):
            product = path.removeprefix("/products/")
            self.reply(
                request,
                200,
                {
                    "product_id": product,
                    "base_increment": "0.00000001",
                    "base_min_size": "0.00001",
                    "quote_min_size": "1",
                    "price": str(self.prices.get(product, "1")),
                },
            )
        elif method == "GET" and path == "/orders/historical/batch":
            self.reply(request, 200, self.list_orders(dict(parse_qsl(urlsplit(request.path).query))))
        elif method == "GET" and path.startswith("/orders/historical/"):
            order = self.orders.get(path.removeprefix("/orders/historical/"))
            if order is None:
                self.reply(request, 404, {"error": "NOT_FOUND"})
            else:
                self.reply(request, 200, {"order": order})
        elif method == "POST" and path == "/orders":
            length = int(request.headers.get("Content-Length", "0"))
            self.reply(request, 200, self.place(json.loads(request.rfile.read(length)), fault))
        else:
            self.reply(request, 404, {"error": "NOT_FOUND"})

    def place(self, body: dict[str, Any], fault: str) -> dict[str, Any]:
        self.order_posts += 1
        client_id = body["client_order_id"]
        if client_id in self.by_client_id:  # Coinbase: a repeated client_order_id returns the existing order
            return {"success": True, "success_response": {"order_id": self.by_client_id[client_id]}}
        if fault.startswith("reject:"):
            error = fault.removeprefix("reject:")
            return {"success": False, "error_response": {"error": error, "message": f"{error} (fake)"}}
        product = body["product_id"]
        base = product.split("-")[0]
        price = self.prices[product]
        config = body["order_configuration"]["market_market_ioc"]
        if body["side"] == "BUY":
            quote = Decimal(config["quote_size"])
            if quote > self.balances.get("USD", Decimal(0)):
                return {"success": False, "error_response": {"error": "INSUFFICIENT_FUND", "message": "no cash"}}
            size = (quote / price).quantize(Decimal("0.00000001"))
            self.balances["USD"] -= quote
            self.balances[base] = self.balances.get(base, Decimal(0)) + size
        else:
            size = Decimal(config["base_size"])
            if size > self.balances.get(base, Decimal(0)):
                return {"success": False, "error_response": {"error": "INSUFFICIENT_FUND", "message": "no coins"}}
            self.balances[base] -= size
            self.balances["USD"] += size * price
        order_id = str(uuid.uuid4())
        fees = (size * price * Decimal("0.006")).quantize(Decimal("0.00000001"))
        if fault == "open":  # accepted, not filled yet: fill_open_orders() fills it later
            self.open_fills[order_id] = {"status": "FILLED", "filled_size": str(size), "total_fees": str(fees)}
        self.orders[order_id] = {
            "order_id": order_id,
            "client_order_id": client_id,
            "product_id": product,
            "side": body["side"],
            "status": "FILLED",
            "filled_size": str(size),
            "average_filled_price": str(price),
            "total_fees": str(fees),
            "created_time": datetime.now(UTC).isoformat(),
        }
        if fault == "open":
            self.orders[order_id] |= {"status": "OPEN", "filled_size": "0", "total_fees": "0"}
        self.by_client_id[client_id] = order_id
        return {"success": True, "success_response": {"order_id": order_id}}

    def list_orders(self, query: dict[str, str]) -> dict[str, Any]:
        """List Orders: every order (newest first), filtered by product_ids and start_date as Coinbase does."""
        since = datetime.fromisoformat(query["start_date"]) if "start_date" in query else None
        orders = [
            o
            for o in self.orders.values()
            if ("product_ids" not in query or o["product_id"] == query["product_ids"])
            and (since is None or datetime.fromisoformat(o["created_time"]) >= since)
        ]
        orders.sort(key=lambda o: str(o["created_time"]), reverse=True)
        self.list_requests += 1
        return {"orders": orders, "has_next": False, "cursor": ""}

    def add_foreign_order(self, product: str, client_order_id: str = "") -> str:
        """An order placed by someone else on the same key (or by an installation whose database was lost)."""
        order_id = str(uuid.uuid4())
        self.orders[order_id] = {
            "order_id": order_id,
            "client_order_id": client_order_id,
            "product_id": product,
            "side": "BUY",
            "status": "FILLED",
            "filled_size": "0.001",
            "average_filled_price": str(self.prices.get(product, "1")),
            "total_fees": "0.01",
            "created_time": datetime.now(UTC).isoformat(),
        }
        return order_id

    def fill_open_orders(self) -> None:
        for order_id, fill in self.open_fills.items():
            self.orders[order_id] |= fill
        self.open_fills.clear()

    def distinct_orders(self) -> int:
        return len(self.orders)


def live_settings(url: str, fake: FakeCoinbase, **extra: Any) -> Any:
    """Settings of a live executor trading on ``fake`` (fast retries)."""
    from tests.conftest import make_settings

    values: dict[str, Any] = {
        "execution_mode": "live",
        "market_data_source": "coinbase",
        "coinbase_api_base_url": fake.base_url,
        "coinbase_api_key_name": fake.key_name,
        "coinbase_api_private_key": fake.private_key_pem,
        "coinbase_backoff_seconds": 0.01,
        "coinbase_max_retries": 3,
    }
    return make_settings(url, **(values | extra))


def market_product(product_id: str, volume: str, price: str = "100", **flags: Any) -> dict[str, Any]:
    """A product as GET /market/products lists it."""
    base, quote = product_id.split("-")
    return {
        "product_id": product_id,
        "price": price,
        "volume_24h": volume,
        "quote_currency_id": quote,
        "base_currency_id": base,
        "status": "online",
        "trading_disabled": False,
        "cancel_only": False,
        "limit_only": False,
        "view_only": False,
        "base_increment": "0.00000001",
        "quote_min_size": "1",
        **flags,
    }
