"""All configuration, read once from the environment at start-up and validated.

No other module reads os.environ. A bad value stops the process with one line that names the variable and the
problem, never the value (it may be a secret)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from common.errors import ConfigError

Port = Annotated[int, Field(ge=1, le=65535)]
# 0 disables the metrics endpoint.
MetricsPort = Annotated[int, Field(ge=0, le=65535)]
Probability = Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveSeconds = Annotated[float, Field(gt=0.0, le=86_400.0 * 30)]
SymbolList = Annotated[list[str], NoDecode]

SUPPORTED_DATABASE_DRIVERS = ("sqlite+aiosqlite", "mysql+asyncmy")
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/crypto_prices.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # --- shared ---
    database_url: str = DEFAULT_DATABASE_URL
    execution_mode: Literal["paper", "live"] = "paper"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    bind_host: str = "0.0.0.0"
    shutdown_grace_seconds: PositiveSeconds = 10.0
    health_check_interval_seconds: PositiveSeconds = 5.0

    # --- ports and addresses ---
    signal_generator_port: Port = 8025
    signal_bridge_port: Port = 8022
    trade_orchestrator_port: Port = 8023
    trade_executor_port: Port = 8024
    signal_generator_addr: str = "localhost:8025"
    signal_bridge_addr: str = "localhost:8022"
    trade_orchestrator_addr: str = "localhost:8023"
    trade_executor_addr: str = "localhost:8024"
    signal_generator_metrics_port: MetricsPort = 9025
    signal_bridge_metrics_port: MetricsPort = 9022
    trade_orchestrator_metrics_port: MetricsPort = 9023
    trade_executor_metrics_port: MetricsPort = 9024

    # --- transport security (optional; mutual TLS when GRPC_TLS_CA_FILE is also set) ---
    grpc_tls_cert_file: Path | None = None
    grpc_tls_key_file: Path | None = None
    grpc_tls_ca_file: Path | None = None

    # --- market data and generator ---
    # replay: historical candles (cts.candle_data) released one at a time (embedded default);
    # coinbase: refresh candles from Coinbase before each cycle; database: use what is in market_candles.
    market_data_source: Literal["replay", "coinbase", "database"] = "replay"
    # The candles the generator reads, refreshes and ingests. ONE_HOUR: one signal per closed hourly candle.
    # FIVE_MINUTE (production): hourly bars anchored at the latest closed 5-minute candle, a signal every cycle.
    candle_granularity: Literal["ONE_HOUR", "FIVE_MINUTE"] = "ONE_HOUR"
    model_dir: Path = Path("models")
    model_path: Path | None = None
    buy_threshold: Probability = 0.5
    sell_threshold: Probability = 0.6
    universe_size: Annotated[int, Field(ge=1, le=500)] = 20
    symbol_allowlist: SymbolList = Field(default_factory=list)
    symbol_denylist: SymbolList = Field(default_factory=list)
    generator_interval_seconds: PositiveSeconds = 300.0
    generator_max_symbols: Annotated[int, Field(ge=1, le=10_000)] = 500
    replay_seconds_per_candle: Annotated[float, Field(ge=0.0, le=3600.0)] = 0.05
    # Hours of history before the first replayed candle (hourly candles; 12 times as many 5-minute candles).
    replay_warmup_candles: Annotated[int, Field(ge=1, le=100_000)] = 720
    # Where `make run` / `cts ingest` read candle CSVs (default: ../shared/data/candles, then var/candles).
    candles_dir: Path | None = None

    # --- bridge ---
    bridge_interval_seconds: PositiveSeconds = 30.0
    bridge_min_confidence: Probability = 0.6
    bridge_signal_max_age_seconds: PositiveSeconds = 3600.0
    trade_amount_usd: Annotated[Decimal, Field(gt=0, le=1_000_000)] = Decimal("100")
    bridge_max_signal_ids: Annotated[int, Field(ge=1, le=100_000)] = 1000
    stop_loss_percent: Annotated[Decimal, Field(gt=0, lt=100)] = Decimal("2.0")
    take_profit_percent: Annotated[Decimal, Field(gt=0, le=1000)] = Decimal("4.0")
    position_size_percent: Annotated[Decimal, Field(gt=0, le=100)] = Decimal("1.00")
    # A BUY signal becomes a recommendation only while fewer positions are open (or about to open).
    max_open_positions: Annotated[int, Field(ge=1, le=10_000)] = 10

    # --- orchestrator ---
    orchestrator_interval_seconds: PositiveSeconds = 30.0
    orchestrator_pending_window_seconds: PositiveSeconds = 7200.0
    max_trades_per_window: Annotated[int, Field(ge=1, le=1_000_000)] = 3
    trade_cap_window_seconds: PositiveSeconds = 30.0
    # A claim is a lease renewed every quarter of this while its stream is in flight: a dead replica's claims
    # free up within this many seconds.
    claim_ttl_seconds: PositiveSeconds = 8.0
    # The stream's deadline in paper mode; live mode adds the Coinbase attempt budget (executor_deadline_seconds).
    executor_timeout_seconds: PositiveSeconds = 15.0
    orchestrator_max_ids: Annotated[int, Field(ge=1, le=100_000)] = 1000

    # --- executor ---
    coinbase_api_base_url: str = "https://api.coinbase.com/api/v3/brokerage"
    coinbase_api_key_name: SecretStr | None = None
    coinbase_api_private_key: SecretStr | None = None
    coinbase_timeout_seconds: PositiveSeconds = 10.0
    coinbase_max_retries: Annotated[int, Field(ge=0, le=20)] = 4
    coinbase_backoff_seconds: Annotated[float, Field(ge=0.0, le=60.0)] = 0.5
    # Live only: how often the executor compares the exchange's recent orders with its records, over how long.
    reconcile_interval_seconds: PositiveSeconds = 300.0
    reconcile_lookback_hours: Annotated[int, Field(ge=1, le=24 * 30)] = 48
    paper_slippage_bps: Annotated[Decimal, Field(ge=0, le=1000)] = Decimal("5")
    paper_taker_fee_rate: Annotated[Decimal, Field(ge=0, lt=1)] = Decimal("0.006")
    paper_starting_cash_usd: Annotated[Decimal, Field(ge=0)] = Decimal("10000")
    # Positions: closed at market once open this long (the model's label horizon; 0 disables the time limit), and
    # checked against their stop-loss, take-profit and time limit this often (in replay: once per released candle).
    max_holding_hours: Annotated[float, Field(ge=0.0, le=24.0 * 365)] = 24.0
    position_check_interval_seconds: PositiveSeconds = 60.0

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("not a valid SQLAlchemy URL") from None
        if url.drivername not in SUPPORTED_DATABASE_DRIVERS:
            raise ValueError(f"driver must be one of {', '.join(SUPPORTED_DATABASE_DRIVERS)}")
        if url.drivername.startswith("mysql") and not url.database:
            raise ValueError("a MySQL URL must name the database, for example .../crypto_prices")
        return value

    @field_validator("signal_generator_addr", "signal_bridge_addr", "trade_orchestrator_addr", "trade_executor_addr")
    @classmethod
    def _check_addr(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("must be host:port with a port in 1..65535")
        return value

    @field_validator("symbol_allowlist", "symbol_denylist", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        if isinstance(value, str):
            return [s.strip().upper() for s in value.split(",") if s.strip()]
        return value

    @field_validator("coinbase_api_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if (self.grpc_tls_cert_file is None) != (self.grpc_tls_key_file is None):
            raise ValueError("GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE must be set together")
        if self.execution_mode == "live" and self.market_data_source != "coinbase":
            # Real orders only on live market data, never on replayed or stored candles.
            raise ValueError("EXECUTION_MODE=live requires MARKET_DATA_SOURCE=coinbase")
        return self

    @property
    def is_mysql(self) -> bool:
        return self.database_url.startswith("mysql")


# The longest wait between two attempts of a Coinbase request (common.http_retry.RetryPolicy.max_backoff).
MAX_BACKOFF_SECONDS = 30.0


def coinbase_attempt_budget_seconds(settings: Settings) -> float:
    """The worst case of one Coinbase request in the executor: every attempt (1 + COINBASE_MAX_RETRIES) runs into
    COINBASE_TIMEOUT_SECONDS, with the longest backoff between them (x1.5 jitter, each at most 30 s). 61.25 s with
    the defaults (5 x 10 s + 0.75 + 1.5 + 3 + 6 s). The one place this is computed: the orchestrator's stream
    deadline and the executor's lease on a live order are built on it."""
    attempts = settings.coinbase_max_retries + 1
    waits = sum(
        min(MAX_BACKOFF_SECONDS, settings.coinbase_backoff_seconds * 2.0**retry * 1.5) for retry in range(attempts - 1)
    )
    return attempts * settings.coinbase_timeout_seconds + waits


def executor_deadline_seconds(settings: Settings) -> float:
    """The orchestrator's deadline for one stream to the executor: EXECUTOR_TIMEOUT_SECONDS in paper mode (15 s);
    in live mode the executor's Coinbase attempt budget on top (76.25 s with the defaults), so a slow exchange is
    waited for rather than reported as an unreachable executor. (The executor finishes and records an order even
    when its caller has gone; the deadline only decides whether this cycle hears the outcome.)"""
    if settings.execution_mode == "live":
        return settings.executor_timeout_seconds + coinbase_attempt_budget_seconds(settings)
    return settings.executor_timeout_seconds


def exit_rules_max_holding(settings: Settings) -> timedelta | None:
    """MAX_HOLDING_HOURS as a duration; None when 0 (no time limit)."""
    return timedelta(hours=settings.max_holding_hours) if settings.max_holding_hours > 0 else None


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build the settings from ``environ`` (default: the process environment) plus explicit overrides.

    Raises ConfigError with one line per problem, naming the variable, never the value."""
    env = dict(os.environ if environ is None else environ)
    fields = Settings.model_fields
    values: dict[str, object] = {k.lower(): v for k, v in env.items() if k.lower() in fields}
    values.update(overrides)
    try:
        # Values come from the mapping only (not from os.environ again): _env_parse_none_str etc. do not apply.
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(part) for part in err["loc"]) or "configuration"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc.upper()}: {message}")
    return "; ".join(lines)


def child_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """The process environment plus ``overrides``, for starting the services as child processes (`cts up`)."""
    env = dict(os.environ)
    env.update(overrides)
    return env
