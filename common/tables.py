"""The database schema (SQLAlchemy Core). The two original tables keep their columns, types and enum values
exactly (see the platform issue); everything else was added. Migrations in migrations/ create the same schema
(tests/common/test_schema.py compares them)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Enum,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from common.sqltypes import Money, Probability, UtcDateTime

metadata = MetaData()

SIGNAL_TYPES = ("BUY", "SELL", "HOLD")
RECOMMENDATION_TYPES = ("BUY", "SELL", "HOLD", "STRONG_BUY", "STRONG_SELL")
EXECUTION_STATUSES = ("PENDING", "EXECUTED", "FAILED", "CANCELLED")
# trade_executions.status: PENDING = row committed, order not yet known to be accepted (resolved on restart).
ORDER_STATUSES = ("PENDING", "SUBMITTED", "EXECUTED", "FAILED", "CANCELLED")
EXECUTION_MODES = ("PAPER", "LIVE")

_NOW = text("CURRENT_TIMESTAMP")
# Row ids of the original tables are signed 32-bit INT: the largest id a request may name.
MAX_ROW_ID = 2**31 - 1


def _signal_columns() -> list[Column[Any]]:
    """trading_signals columns, shared with trading_signals_archive."""
    return [
        # --- original columns ---
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("timestamp", UtcDateTime(timestamp=True), server_default=_NOW),
        Column("symbol", String(50), nullable=False),
        Column("price", Money(15, 8), server_default=text("0.0")),
        Column("signal_type", Enum(*SIGNAL_TYPES, name="signal_type"), nullable=False),
        Column("model", String(100)),
        Column("confidence", Probability(), nullable=False),
        Column("threshold", Probability(), server_default=text("0.8")),
        Column("regime", String(50), server_default=text("'bull'")),
        Column("model_version", String(100)),
        Column("features_used", Integer, server_default=text("79")),
        Column("xgboost_confidence", Probability()),
        Column("data_source", String(100), server_default=text("'database'")),
        Column("created_at", UtcDateTime(timestamp=True), server_default=_NOW),
        Column("is_mock", Boolean, server_default=text("0")),
        Column("processed", Boolean, server_default=text("0")),
        Column("prediction", Probability()),
        # --- added ---
        # Start of the closed candle the signal was computed on; unique per symbol (idempotent Generate).
        Column("candle_time", UtcDateTime()),
        Column("buy_probability", Probability()),
        Column("sell_probability", Probability()),
        Column("hold_probability", Probability()),
        # Why the bridge skipped the signal when it marked it processed without a recommendation.
        Column("processed_reason", String(100)),
        # Which generator call wrote the row ("host:pid:call"): two replicas racing on one candle can tell whose
        # insert won, so exactly one of them reports the signal as created (and logs and nudges it).
        Column("generated_by", String(100)),
    ]


trading_signals = Table(
    "trading_signals",
    metadata,
    *_signal_columns(),
    UniqueConstraint("symbol", "candle_time", name="uq_trading_signals_symbol_candle"),
    Index("idx_signals_timestamp", "timestamp"),
    Index("idx_signals_processed_created", "processed", "created_at"),
)


def _recommendation_columns() -> list[Column[Any]]:
    """trade_recommendations columns, shared with trade_recommendations_archive."""
    return [
        # --- original columns ---
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("signal_id", Integer),
        Column("symbol", String(50), nullable=False),
        Column("signal_type", Enum(*RECOMMENDATION_TYPES, name="recommendation_signal_type"), nullable=False),
        Column("amount_usd", Money(15, 8), nullable=False),
        Column("confidence", Probability(), nullable=False),
        Column("reasoning", Text),
        Column(
            "execution_status",
            Enum(*EXECUTION_STATUSES, name="execution_status"),
            server_default=text("'PENDING'"),
        ),
        Column("entry_price", Money(15, 8)),
        Column("stop_loss", Money(15, 8)),
        Column("take_profit", Money(15, 8)),
        Column("position_size_percent", Money(5, 2)),
        Column("amount_crypto", Money(20, 8)),
        Column("is_mock", Boolean, server_default=text("0")),
        Column("created_at", UtcDateTime(timestamp=True), server_default=_NOW),
        # MySQL: ON UPDATE CURRENT_TIMESTAMP (added by the migration); the application also sets it.
        Column("updated_at", UtcDateTime(timestamp=True), server_default=_NOW),
        Column("executed_at", UtcDateTime(timestamp=True), nullable=True),
        # --- added ---
        # "SYMBOL:SIDE" while PENDING, NULL otherwise: the database refuses a second open recommendation
        # for the same symbol and side.
        Column("pending_key", String(80)),
        # Orchestrator claim: which replica holds it and until when (expired claims are taken over).
        Column("claimed_by", String(100)),
        Column("claimed_until", UtcDateTime(fsp=6)),
        # Why it ended FAILED or CANCELLED.
        Column("status_reason", Text),
        # A SELL that closes a position: why (signal, stop_loss, take_profit, time_limit; migration 0005).
        Column("exit_reason", String(20)),
    ]


trade_recommendations = Table(
    "trade_recommendations",
    metadata,
    *_recommendation_columns(),
    Index("idx_signal_id", "signal_id"),
    Index("idx_symbol", "symbol"),
    Index("idx_status", "execution_status"),
    Index("idx_created_at", "created_at"),
    UniqueConstraint("signal_id", name="uq_trade_recommendations_signal_id"),
    UniqueConstraint("pending_key", name="uq_trade_recommendations_pending_key"),
)

market_candles = Table(
    "market_candles",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("symbol", String(50), nullable=False),
    # ONE_MINUTE ... ONE_DAY (Coinbase names); the replayed data is ONE_HOUR.
    Column("granularity", String(20), nullable=False),
    # Candle start, Unix seconds UTC.
    Column("start_time", BigInteger, nullable=False),
    Column("open", Money(24, 10), nullable=False),
    Column("high", Money(24, 10), nullable=False),
    Column("low", Money(24, 10), nullable=False),
    Column("close", Money(24, 10), nullable=False),
    Column("volume", Money(30, 10), nullable=False),
    # csv or coinbase
    Column("source", String(20), nullable=False),
    Column("ingested_at", UtcDateTime(), nullable=False, server_default=_NOW),
    UniqueConstraint("symbol", "granularity", "start_time", name="uq_market_candles_symbol_gran_start"),
)

trade_executions = Table(
    "trade_executions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("recommendation_id", Integer, nullable=False),
    # Deterministic (UUIDv5 of the installation id and the recommendation): every retry and restart sends the same id.
    Column("client_order_id", String(64), nullable=False),
    Column("exchange_order_id", String(100)),
    Column("mode", Enum(*EXECUTION_MODES, name="execution_mode"), nullable=False),
    Column("status", Enum(*ORDER_STATUSES, name="order_status"), nullable=False),
    Column("symbol", String(50), nullable=False),
    Column("side", Enum("BUY", "SELL", name="order_side"), nullable=False),
    # What was asked: quote_size (USD) for BUY, base_size (crypto) for SELL.
    Column("quote_size", Money(20, 8)),
    Column("base_size", Money(28, 10)),
    Column("filled_size", Money(28, 10)),
    Column("average_price", Money(24, 10)),
    Column("fees", Money(20, 8)),
    Column("error_code", String(100)),
    Column("error_message", Text),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("is_mock", Boolean, nullable=False, server_default=text("0")),
    Column("created_at", UtcDateTime(fsp=6), nullable=False, server_default=_NOW),
    Column("updated_at", UtcDateTime(fsp=6), nullable=False, server_default=_NOW),
    Column("completed_at", UtcDateTime(fsp=6)),
    # Live orders: the executor that works on the order (sending or following it) holds a lease until lease_until
    # (migration 0004); no database transaction is held while Coinbase answers.
    Column("lease_owner", String(100)),
    Column("lease_until", UtcDateTime(fsp=6)),
    UniqueConstraint("recommendation_id", name="uq_trade_executions_recommendation"),
    UniqueConstraint("client_order_id", name="uq_trade_executions_client_order_id"),
    Index("idx_trade_executions_status", "status"),
)

# Paper portfolio: one row per asset ("USD" is cash).
paper_balances = Table(
    "paper_balances",
    metadata,
    Column("asset", String(20), primary_key=True),
    Column("available", Money(30, 10), nullable=False),
    Column("updated_at", UtcDateTime(fsp=6), nullable=False, server_default=_NOW),
)

POSITION_STATUSES = ("OPEN", "CLOSED")
EXIT_REASONS = ("signal", "stop_loss", "take_profit", "time_limit")

# One row per position (migration 0005): opened by an executed BUY, closed by the SELL that sells all of it (a SELL
# signal, the stop-loss, the take-profit or the time limit). Written in the same transaction as the execution that
# changes it. open_key = "MODE:SYMBOL" while OPEN (NULL once closed): at most one open position per mode and symbol.
positions = Table(
    "positions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mode", Enum(*EXECUTION_MODES, name="execution_mode"), nullable=False),
    Column("symbol", String(50), nullable=False),
    Column("status", Enum(*POSITION_STATUSES, name="position_status"), nullable=False),
    Column("open_key", String(80)),
    Column("quantity", Money(28, 10), nullable=False),
    Column("entry_price", Money(24, 10), nullable=False),  # average fill price
    Column("entry_cost", Money(20, 8), nullable=False),  # USD paid, fees included
    Column("stop_loss", Money(24, 10)),
    Column("take_profit", Money(24, 10)),
    Column("opened_at", UtcDateTime(fsp=6), nullable=False),
    Column("entry_recommendation_id", Integer, nullable=False),
    # Live: the attached bracket order (take-profit / stop-loss) that protects the position on Coinbase.
    Column("bracket_order_id", String(100)),
    Column("closed_at", UtcDateTime(fsp=6)),
    Column("exit_recommendation_id", Integer),
    Column("exit_reason", Enum(*EXIT_REASONS, name="exit_reason")),
    Column("exit_price", Money(24, 10)),
    Column("fees", Money(20, 8), nullable=False, server_default=text("0")),  # entry and exit fees, USD
    Column("realized_pnl", Money(20, 8)),  # proceeds after fees - entry_cost, once closed
    Column("updated_at", UtcDateTime(fsp=6), nullable=False, server_default=_NOW),
    UniqueConstraint("open_key", name="uq_positions_open_key"),
    UniqueConstraint("entry_recommendation_id", name="uq_positions_entry_recommendation"),
    Index("idx_positions_status", "status"),
)

# Small key/value table read by every replica, for example the trading halt ("trading_halt").
system_control = Table(
    "system_control",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_by", String(100)),
    Column("updated_at", UtcDateTime(fsp=6), nullable=False, server_default=_NOW),
)

# One row per recommendation sent to the executor: the rolling trade cap counts these across replicas.
orchestrator_dispatches = Table(
    "orchestrator_dispatches",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("recommendation_id", Integer, nullable=False),
    Column("orchestrator_id", String(100), nullable=False),
    Column("dispatched_at", UtcDateTime(fsp=6), nullable=False),
    Index("idx_orchestrator_dispatches_at", "dispatched_at"),
)

# Archives (cts archive): the same columns as the live tables, no unique keys besides the id.
trading_signals_archive = Table(
    "trading_signals_archive",
    metadata,
    *_signal_columns(),
    Column("archived_at", UtcDateTime(), nullable=False, server_default=_NOW),
)
trade_recommendations_archive = Table(
    "trade_recommendations_archive",
    metadata,
    *_recommendation_columns(),
    Column("archived_at", UtcDateTime(), nullable=False, server_default=_NOW),
)
