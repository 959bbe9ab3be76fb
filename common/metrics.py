"""Prometheus metrics shared by the four services (each process exposes its own on its metrics port)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

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


def start_metrics_server(port: int, host: str = "0.0.0.0") -> None:
    """Serve /metrics on ``port`` (0 disables)."""
    if port:
        start_http_server(port, addr=host)
