"""A local fake of Coinbase Advanced Trade for tests (never shipped): a real HTTP server that verifies every JWT
as Coinbase does and implements the endpoints the executor uses, with injectable faults, plus the public market
data endpoints (products, candles) the generator and `cts ingest --source coinbase` use.

JWT checks: ES256 signature with the registered public key, alg, kid, typ, iss = "cdp", sub = key name, nbf/exp
window, and uri = "<METHOD> <host><path>" of the actual request. Orders are deduplicated by client_order_id.

Brackets, as Coinbase Advanced Trade shows them (see executor_svc/coinbase_client.py for the sources): a market BUY
may carry ``attached_order_configuration: {trigger_bracket_gtc: {limit_price, stop_trigger_price}}`` (no size:
the parent's). The bracket is an order of its own (order_type BRACKET, side SELL, originating_order_id = the
parent, the parent's attached_order_id = it, also named in the create answer's success_response): OPEN once the
parent filled (PENDING while the parent is open), holding the coins it covers (they leave the available
balance). It is refused like Coinbase refuses it (success false, error_response) unless limit_price >
stop_trigger_price, both multiples of the product's quote_increment, and (``check_bracket_against_price``) the
stop below and the target above the current price. Test hooks: ``trigger_bracket`` fills a leg,
``fill_before_cancel`` plays the race of a bracket that fills while a cancel is on its way, ``bracket_of`` reads
the fake's own record. POST /orders/batch_cancel cancels live orders (success true) and refuses filled ones
(ORDER_IS_FULLY_FILLED). Every fill is listed by GET /orders/historical/fills."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, parse_qsl, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

API = "/api/v3/brokerage"
FEE_RATE = Decimal("0.006")
SATOSHI = Decimal("0.00000001")
DEFAULT_QUOTE_INCREMENT = Decimal("0.01")
DEFAULT_PRICE = Decimal("9000")  # of a product without a price of its own (the seeded candles' price)
LIVE = ("OPEN", "PENDING", "QUEUED", "CANCEL_QUEUED")
Leg = Literal["take_profit", "stop_loss"]


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
    candle_granularities: list[str] = field(default_factory=list)  # of each candle request, in order
    # Brackets, cancels and fills.
    quote_increments: dict[str, Decimal] = field(default_factory=lambda: {"BTC-USD": Decimal("0.01")})
    check_bracket_against_price: bool = True
    fills: list[dict[str, Any]] = field(default_factory=list)
    order_bodies: list[dict[str, Any]] = field(default_factory=list)  # every POST /orders body, as sent
    cancel_requests: list[list[str]] = field(default_factory=list)
    races: dict[str, tuple[Leg, bool]] = field(default_factory=dict)  # bracket id -> (leg, cancel answered success)
    lock: threading.RLock = field(default_factory=threading.RLock)
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
        if (
            len(parts) != 5
            or parts[4] != "candles"
            or (parts[3] not in self.market_candles and parts[3] not in self.market_candles_5m)
        ):
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
        self.candle_granularities.append(query["granularity"])
        series = (self.market_candles if step == 3600 else self.market_candles_5m).get(parts[3], [])
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
            with self.lock:
                accounts = [
                    {
                        "currency": c,
                        "available_balance": {"value": str(v - self.held(c)), "currency": c},
                        "hold": {"value": str(self.held(c)), "currency": c},
                    }
                    for c, v in self.balances.items()
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
                    "quote_increment": str(self.quote_increment(product)),
                    "price": str(self.price(product)),
                },
            )
        elif method == "GET" and path == "/orders/historical/batch":
            self.reply(request, 200, self.list_orders(dict(parse_qsl(urlsplit(request.path).query))))
        elif method == "GET" and path == "/orders/historical/fills":
            self.reply(request, 200, self.list_fills(parse_qs(urlsplit(request.path).query)))
        elif method == "GET" and path.startswith("/orders/historical/"):
            order = self.orders.get(path.removeprefix("/orders/historical/"))
            if order is None:
                self.reply(request, 404, {"error": "NOT_FOUND"})
            else:
                self.reply(request, 200, {"order": order})
        elif method == "POST" and path == "/orders":
            self.reply(request, 200, self.place(self.body(request), fault))
        elif method == "POST" and path == "/orders/batch_cancel":
            order_ids = self.body(request).get("order_ids")
            if not isinstance(order_ids, list) or not order_ids or not all(isinstance(i, str) for i in order_ids):
                self.reply(request, 400, {"error": "INVALID_ARGUMENT", "message": "order_ids: a list of order ids"})
            else:
                self.reply(request, 200, self.batch_cancel(order_ids))
        else:
            self.reply(request, 404, {"error": "NOT_FOUND"})

    @staticmethod
    def body(request: BaseHTTPRequestHandler) -> dict[str, Any]:
        length = int(request.headers.get("Content-Length", "0"))
        data = json.loads(request.rfile.read(length))
        assert isinstance(data, dict)
        return data

    def price(self, product: str) -> Decimal:
        """The market price of ``product`` (DEFAULT_PRICE when the test set none: every product trades)."""
        return self.prices.get(product, DEFAULT_PRICE)

    def quote_increment(self, product: str) -> Decimal:
        return self.quote_increments.get(product, DEFAULT_QUOTE_INCREMENT)

    def place(self, body: dict[str, Any], fault: str) -> dict[str, Any]:
        with self.lock:
            return self._place(body, fault)

    def _place(self, body: dict[str, Any], fault: str) -> dict[str, Any]:
        self.order_posts += 1
        self.order_bodies.append(body)
        client_id = body["client_order_id"]
        if client_id in self.by_client_id:  # Coinbase: a repeated client_order_id returns the existing order
            existing = self.orders[self.by_client_id[client_id]]
            return {
                "success": True,
                "success_response": {
                    "order_id": existing["order_id"],
                    "attached_order_id": existing["attached_order_id"],
                },
            }
        if fault.startswith("reject:"):
            error = fault.removeprefix("reject:")
            return {"success": False, "error_response": {"error": error, "message": f"{error} (fake)"}}
        product = body["product_id"]
        base = product.split("-")[0]
        price = self.price(product)
        attached = body.get("attached_order_configuration")
        if attached is not None:
            refusal = self.bracket_refusal(body, attached)
            if refusal is not None:
                return refusal
        config = body["order_configuration"]["market_market_ioc"]
        if body["side"] == "BUY":
            quote = Decimal(config["quote_size"])
            if quote > self.balances.get("USD", Decimal(0)):
                return {"success": False, "error_response": {"error": "INSUFFICIENT_FUND", "message": "no cash"}}
            size = (quote / price).quantize(SATOSHI)
            self.balances["USD"] -= quote
            self.balances[base] = self.balances.get(base, Decimal(0)) + size
        else:
            size = Decimal(config["base_size"])
            if size > self.balances.get(base, Decimal(0)) - self.held(base):  # coins on hold for a bracket
                return {"success": False, "error_response": {"error": "INSUFFICIENT_FUND", "message": "no coins"}}
            self.balances[base] -= size
            self.balances["USD"] += size * price
        order_id = str(uuid.uuid4())
        fees = (size * price * FEE_RATE).quantize(SATOSHI)
        if fault == "open":  # accepted, not filled yet: fill_open_orders() fills it later
            self.open_fills[order_id] = {"status": "FILLED", "filled_size": str(size), "total_fees": str(fees)}
        now = datetime.now(UTC).isoformat()
        self.orders[order_id] = {
            "order_id": order_id,
            "client_order_id": client_id,
            "product_id": product,
            "side": body["side"],
            "order_type": "MARKET",
            "status": "FILLED",
            "filled_size": str(size),
            "average_filled_price": str(price),
            "total_fees": str(fees),
            "created_time": now,
            "order_configuration": body["order_configuration"],
            "originating_order_id": "",
            "attached_order_id": "",
        }
        if fault == "open":
            self.orders[order_id] |= {"status": "OPEN", "filled_size": "0", "total_fees": "0"}
        else:
            self.record_fill(self.orders[order_id], size, price, fees)
        if attached is not None:
            self.attach_bracket(self.orders[order_id], attached, size, now)
        self.by_client_id[client_id] = order_id
        return {
            "success": True,
            "success_response": {"order_id": order_id, "attached_order_id": self.orders[order_id]["attached_order_id"]},
        }

    def bracket_refusal(self, body: dict[str, Any], attached: Any) -> dict[str, Any] | None:
        """Coinbase's answer refusing the attached bracket of ``body``, or None when it is acceptable."""

        def refuse(error: str, message: str, preview: str = "") -> dict[str, Any]:
            return {
                "success": False,
                "failure_reason": "UNKNOWN_FAILURE_REASON",
                "error_response": {
                    "error": error,
                    "message": message,
                    "error_details": message,
                    "preview_failure_reason": preview or f"PREVIEW_{error}",
                },
            }

        if not isinstance(attached, dict) or set(attached) != {"trigger_bracket_gtc"}:
            return refuse("UNSUPPORTED_ORDER_CONFIGURATION", "only trigger_bracket_gtc can be attached")
        if body["side"] != "BUY" or set(body["order_configuration"]) != {"market_market_ioc"}:
            return refuse("UNSUPPORTED_ORDER_CONFIGURATION", "the fake attaches brackets to market BUYs only")
        config = attached["trigger_bracket_gtc"]
        if not isinstance(config, dict) or "base_size" in config or "quote_size" in config:
            return refuse("INVALID_REQUEST", "the size of an attached order must be omitted (it is the parent's)")
        try:
            take_profit, stop = Decimal(config["limit_price"]), Decimal(config["stop_trigger_price"])
        except (KeyError, TypeError, InvalidOperation):
            return refuse("INVALID_REQUEST", "limit_price and stop_trigger_price must be decimal strings")
        if not (take_profit.is_finite() and stop.is_finite()) or stop <= 0:
            return refuse("INVALID_REQUEST", "limit_price and stop_trigger_price must be positive")
        increment = self.quote_increment(body["product_id"])
        if take_profit % increment or stop % increment:
            return refuse(
                "INVALID_PRICE_PRECISION",
                f"prices must be multiples of the quote_increment {increment}",
                "PREVIEW_INVALID_PRICE_PRECISION",
            )
        if take_profit <= stop:
            return refuse(
                "INVALID_LIMIT_PRICE",
                "the take-profit limit_price must be above the stop_trigger_price",
                "PREVIEW_INVALID_ATTACHED_TAKE_PROFIT_PRICE",
            )
        if self.check_bracket_against_price:
            price = self.price(body["product_id"])
            if stop >= price:
                return refuse(
                    "INVALID_STOP_PRICE",
                    "the stop_trigger_price must be below the current price",
                    "PREVIEW_INVALID_ATTACHED_STOP_LOSS_PRICE",
                )
            if take_profit <= price:
                return refuse(
                    "INVALID_LIMIT_PRICE",
                    "the take-profit limit_price must be above the current price",
                    "PREVIEW_INVALID_ATTACHED_TAKE_PROFIT_PRICE",
                )
        return None

    def attach_bracket(self, parent: dict[str, Any], attached: dict[str, Any], size: Decimal, now: str) -> None:
        """The bracket order of ``parent``: OPEN once the parent filled (PENDING until then), of the parent's size."""
        bracket_id = str(uuid.uuid4())
        prices = attached["trigger_bracket_gtc"]
        self.orders[bracket_id] = {
            "order_id": bracket_id,
            "client_order_id": "",
            "product_id": parent["product_id"],
            "side": "SELL",
            "order_type": "BRACKET",
            "status": "OPEN" if parent["status"] == "FILLED" else "PENDING",
            "trigger_status": "STOP_PENDING",
            "filled_size": "0",
            "average_filled_price": "0",
            "total_fees": "0",
            "created_time": now,
            "order_configuration": {
                "trigger_bracket_gtc": {
                    "base_size": str(size),
                    "limit_price": str(prices["limit_price"]),
                    "stop_trigger_price": str(prices["stop_trigger_price"]),
                }
            },
            "originating_order_id": parent["order_id"],
            "attached_order_id": "",
        }
        parent["attached_order_id"] = bracket_id
        parent["attached_order_configuration"] = attached

    def record_fill(self, order: dict[str, Any], size: Decimal, price: Decimal, fees: Decimal) -> None:
        self.fills.append(
            {
                "entry_id": str(uuid.uuid4()),
                "trade_id": str(uuid.uuid4()),
                "order_id": order["order_id"],
                "trade_time": datetime.now(UTC).isoformat(),
                "trade_type": "FILL",
                "price": str(price),
                "size": str(size),
                "commission": str(fees),
                "product_id": order["product_id"],
                "sequence_timestamp": datetime.now(UTC).isoformat(),
                "liquidity_indicator": "TAKER",
                "size_in_quote": False,
                "side": order["side"],
            }
        )

    def held(self, currency: str) -> Decimal:
        """The coins of ``currency`` on hold for open brackets (not available to sell)."""
        return sum(
            (
                Decimal(o["order_configuration"]["trigger_bracket_gtc"]["base_size"]) - Decimal(o["filled_size"])
                for o in self.orders.values()
                if o.get("order_type") == "BRACKET"
                and o["status"] in ("OPEN", "CANCEL_QUEUED")
                and o["product_id"].split("-")[0] == currency
            ),
            Decimal(0),
        )

    def bracket_of(self, order_id: str) -> dict[str, Any]:
        """The bracket order (the fake's record) of a parent order id, or the bracket itself."""
        order = self.orders[order_id]
        if order.get("order_type") == "BRACKET":
            return order
        if not order.get("attached_order_id"):
            raise KeyError(f"order {order_id} carries no bracket")
        return self.orders[order["attached_order_id"]]

    def trigger_bracket(self, order_id: str, leg: Leg, price: Decimal | None = None) -> dict[str, Any]:
        """Fill the OPEN bracket of ``order_id`` (a parent or the bracket) by one leg: all of it, at ``price`` or at
        the leg's own price (the take-profit's limit_price, the stop's stop_trigger_price), with fees. The coins
        leave the balance, the proceeds arrive in USD. Returns the bracket's record."""
        if leg not in ("take_profit", "stop_loss"):
            raise ValueError(f"leg must be take_profit or stop_loss, not {leg!r}")
        with self.lock:
            bracket = self.bracket_of(order_id)
            if bracket["status"] != "OPEN":
                raise ValueError(f"bracket {bracket['order_id']} is {bracket['status']}, not OPEN")
            config = bracket["order_configuration"]["trigger_bracket_gtc"]
            at = (
                price
                if price is not None
                else Decimal(config["limit_price" if leg == "take_profit" else "stop_trigger_price"])
            )
            size = Decimal(config["base_size"])
            fees = (size * at * FEE_RATE).quantize(SATOSHI)
            base = bracket["product_id"].split("-")[0]
            self.balances[base] -= size
            self.balances["USD"] = self.balances.get("USD", Decimal(0)) + size * at
            bracket |= {
                "status": "FILLED",
                "filled_size": str(size),
                "average_filled_price": str(at),
                "total_fees": str(fees),
                "trigger_status": "STOP_TRIGGERED" if leg == "stop_loss" else "STOP_PENDING",
            }
            self.record_fill(bracket, size, at, fees)
            return bracket

    def fill_before_cancel(self, order_id: str, leg: Leg = "stop_loss", *, cancel_succeeds: bool = False) -> None:
        """The race of a bracket that fills while a SELL is cancelling it: when the next batch_cancel names the
        bracket of ``order_id`` (a parent or the bracket), the bracket fills by ``leg`` first. The cancel then
        fails with ORDER_IS_FULLY_FILLED, or (``cancel_succeeds``) is answered success like a cancel Coinbase
        had initiated before the fill: only the bracket's status tells that it filled."""
        with self.lock:
            self.races[self.bracket_of(order_id)["order_id"]] = (leg, cancel_succeeds)

    def batch_cancel(self, order_ids: list[str]) -> dict[str, Any]:
        with self.lock:
            self.cancel_requests.append(list(order_ids))
            return {"results": [self.cancel_one(order_id) for order_id in order_ids]}

    def cancel_one(self, order_id: str) -> dict[str, Any]:
        def result(success: bool, reason: str) -> dict[str, Any]:
            return {"success": success, "failure_reason": reason, "order_id": order_id}

        order = self.orders.get(order_id)
        race = self.races.pop(order_id, None)
        if order is None:
            return result(False, "UNKNOWN_CANCEL_ORDER")
        if race is not None and order["status"] == "OPEN":
            leg, cancel_succeeds = race
            self.trigger_bracket(order_id, leg)
            if cancel_succeeds:
                return result(True, "UNKNOWN_CANCEL_FAILURE_REASON")
        if order["status"] in LIVE:
            order["status"] = "CANCELLED"
            return result(True, "UNKNOWN_CANCEL_FAILURE_REASON")  # Coinbase's default, sent with success too
        if order["status"] == "FILLED":
            return result(False, "ORDER_IS_FULLY_FILLED")
        return result(False, "DUPLICATE_CANCEL_REQUEST")

    def list_fills(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """List Fills, filtered by order_ids and product_ids as Coinbase does (newest first, one page)."""
        order_ids, products = set(query.get("order_ids", [])), set(query.get("product_ids", []))
        with self.lock:
            fills = [
                f
                for f in reversed(self.fills)
                if (not order_ids or f["order_id"] in order_ids) and (not products or f["product_id"] in products)
            ]
        return {"fills": fills, "cursor": ""}

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
            "order_type": "MARKET",
            "status": "FILLED",
            "filled_size": "0.001",
            "average_filled_price": str(self.price(product)),
            "total_fees": "0.01",
            "created_time": datetime.now(UTC).isoformat(),
            "originating_order_id": "",
            "attached_order_id": "",
        }
        return order_id

    def fill_open_orders(self) -> None:
        """Fill the orders accepted open (fault "open"); their brackets become OPEN."""
        with self.lock:
            for order_id, fill in self.open_fills.items():
                order = self.orders[order_id]
                order |= fill
                self.record_fill(
                    order,
                    Decimal(fill["filled_size"]),
                    Decimal(order["average_filled_price"]),
                    Decimal(fill["total_fees"]),
                )
                bracket = self.orders.get(order.get("attached_order_id", ""))
                if bracket is not None and bracket["status"] == "PENDING":
                    bracket["status"] = "OPEN"
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
