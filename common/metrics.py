"""Prometheus metrics shared by the four services, and the HTTP server on each service's metrics port.

The metrics port answers:

- ``GET /metrics`` (and any other path, as before): the Prometheus exposition;
- ``GET /health``: JSON ``{"service": ..., "status": "SERVING" | "NOT_SERVING" | ..., "reason": ...}``, the status the
  gRPC health service reports for the service's own name; HTTP 200 only when SERVING, else 503 (readiness);
- ``GET /live``: JSON, HTTP 200 while the process (its event loop) answers, whatever the database or Coinbase say
  (liveness).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

RPC_LATENCY = Histogram(
    "cts_rpc_latency_seconds",
    "gRPC handler latency",
    ["method", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LOOP_CYCLE_SECONDS = Histogram(
    "cts_loop_cycle_seconds",
    "Duration of one background loop cycle",
    ["loop"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LOOP_ERRORS = Counter("cts_loop_errors_total", "Background loop cycles that raised", ["loop"])
SIGNALS = Counter("cts_signals_total", "Trading signals written", ["signal_type"])
RECOMMENDATIONS = Counter("cts_recommendations_total", "Recommendations by resulting status", ["status"])
EXECUTIONS = Counter("cts_executions_total", "Executions by final status and mode", ["status", "mode"])
EXCHANGE_ERRORS = Counter("cts_exchange_errors_total", "Exchange call errors by kind", ["kind"])
SERVING_STATUS = Gauge(
    "cts_health_serving", "1 while the service's gRPC health is SERVING (readiness), else 0", ["service"]
)
EXCHANGE_UNKNOWN_ORDERS = Gauge(
    "cts_exchange_unknown_orders", "Orders the exchange lists that the database does not know (last reconciliation)"
)
RECONCILIATION_MISMATCHES = Gauge(
    "cts_reconciliation_mismatches", "Recorded outcomes the exchange contradicts (last reconciliation)"
)
TRADING_HALTED = Gauge("cts_trading_halted", "1 while the trading halt (kill switch) is on, as an orchestrator read it")

HealthReport = Callable[[], Mapping[str, Any]]
"""Called from the HTTP thread; returns at least {"status": <name>}. 200 only when the status is SERVING (or ALIVE)."""

_OK_STATUSES = ("SERVING", "ALIVE")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes every few seconds: no access log."""


def metrics_app(health: HealthReport | None = None, live: HealthReport | None = None) -> WSGIApplication:
    """The WSGI app of the metrics port: /health and /live as JSON, everything else the Prometheus exposition."""
    prometheus = make_wsgi_app()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO") or "/").rstrip("/") or "/"
        report_of = {"/health": health, "/live": live}.get(path)
        if report_of is None:
            exposition: Iterable[bytes] = prometheus(environ, start_response)
            return exposition
        try:
            report = dict(report_of())
        except Exception as exc:  # a stuck or stopped event loop: not healthy, and say so
            report = {"status": "UNKNOWN", "reason": f"no answer from the service ({type(exc).__name__})"}
        ok = report.get("status") in _OK_STATUSES
        body = json.dumps(report, sort_keys=True).encode() + b"\n"
        start_response(
            "200 OK" if ok else "503 Service Unavailable",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    return app


class MetricsServer:
    """The HTTP server of the metrics port, in a daemon thread (one thread per request)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(
    port: int,
    host: str = "0.0.0.0",
    *,
    health: HealthReport | None = None,
    live: HealthReport | None = None,
) -> MetricsServer:
    """Serve /metrics, /health and /live on ``host:port`` (port 0: any free port). Raises OSError when the port
    cannot be bound."""

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = make_server(host, port, metrics_app(health, live), Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name=f"metrics-{port}", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
