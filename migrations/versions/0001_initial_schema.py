"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 12:21:34.411260
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from common.sqltypes import Money, UtcDateTime
from migrations import adopt

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    bind = op.get_bind()
    # An existing database from the deployment guide (common.migrate checked it first): adopt its tables.
    existing = adopt.existing_tables(bind)
    adopt.require_compatible(bind)

    if "market_candles" not in existing:
        op.create_table(
            "market_candles",
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
            sa.Column("symbol", sa.String(length=50), nullable=False),
            sa.Column("granularity", sa.String(length=20), nullable=False),
            sa.Column("start_time", sa.BigInteger(), nullable=False),
            sa.Column("open", Money(24, 10), nullable=False),
            sa.Column("high", Money(24, 10), nullable=False),
            sa.Column("low", Money(24, 10), nullable=False),
            sa.Column("close", Money(24, 10), nullable=False),
            sa.Column("volume", Money(30, 10), nullable=False),
            sa.Column("source", sa.String(length=20), nullable=False),
            sa.Column("ingested_at", UtcDateTime(), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("symbol", "granularity", "start_time", name="uq_market_candles_symbol_gran_start"),
        )

    if "orchestrator_dispatches" not in existing:
        op.create_table(
            "orchestrator_dispatches",
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
            sa.Column("recommendation_id", sa.Integer(), nullable=False),
            sa.Column("orchestrator_id", sa.String(length=100), nullable=False),
            sa.Column("dispatched_at", UtcDateTime(fsp=6), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        with op.batch_alter_table("orchestrator_dispatches", schema=None) as batch_op:
            batch_op.create_index("idx_orchestrator_dispatches_at", ["dispatched_at"], unique=False)

    if "paper_balances" not in existing:
        op.create_table(
            "paper_balances",
            sa.Column("asset", sa.String(length=20), nullable=False),
            sa.Column("available", Money(30, 10), nullable=False),
            sa.Column("updated_at", UtcDateTime(fsp=6), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
            sa.PrimaryKeyConstraint("asset"),
        )

    if "system_control" not in existing:
        op.create_table(
            "system_control",
            sa.Column("key", sa.String(length=100), nullable=False),
            sa.Column("value", sa.Text(), nullable=False),
            sa.Column("updated_by", sa.String(length=100), nullable=True),
            sa.Column("updated_at", UtcDateTime(fsp=6), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
            sa.PrimaryKeyConstraint("key"),
        )

    if "trade_executions" not in existing:
        op.create_table(
            "trade_executions",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("recommendation_id", sa.Integer(), nullable=False),
            sa.Column("client_order_id", sa.String(length=64), nullable=False),
            sa.Column("exchange_order_id", sa.String(length=100), nullable=True),
            sa.Column("mode", sa.Enum("PAPER", "LIVE", name="execution_mode"), nullable=False),
            sa.Column(
                "status",
                sa.Enum("PENDING", "SUBMITTED", "EXECUTED", "FAILED", "CANCELLED", name="order_status"),
                nullable=False,
            ),
            sa.Column("symbol", sa.String(length=50), nullable=False),
            sa.Column("side", sa.Enum("BUY", "SELL", name="order_side"), nullable=False),
            sa.Column("quote_size", Money(20, 8), nullable=True),
            sa.Column("base_size", Money(28, 10), nullable=True),
            sa.Column("filled_size", Money(28, 10), nullable=True),
            sa.Column("average_price", Money(24, 10), nullable=True),
            sa.Column("fees", Money(20, 8), nullable=True),
            sa.Column("error_code", sa.String(length=100), nullable=True),
            sa.Column("error_message", sa.Text(), nullable=True),
            sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
            sa.Column("is_mock", sa.Boolean(), server_default=sa.text("0"), nullable=False),
            sa.Column("created_at", UtcDateTime(fsp=6), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
            sa.Column("updated_at", UtcDateTime(fsp=6), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
            sa.Column("completed_at", UtcDateTime(fsp=6), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("client_order_id", name="uq_trade_executions_client_order_id"),
            sa.UniqueConstraint("recommendation_id", name="uq_trade_executions_recommendation"),
        )
        with op.batch_alter_table("trade_executions", schema=None) as batch_op:
            batch_op.create_index("idx_trade_executions_status", ["status"], unique=False)

    if "trade_recommendations" not in existing:
        op.create_table(
            "trade_recommendations",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("signal_id", sa.Integer(), nullable=True),
            sa.Column("symbol", sa.String(length=50), nullable=False),
            sa.Column(
                "signal_type",
                sa.Enum("BUY", "SELL", "HOLD", "STRONG_BUY", "STRONG_SELL", name="recommendation_signal_type"),
                nullable=False,
            ),
            sa.Column("amount_usd", Money(15, 8), nullable=False),
            sa.Column("confidence", Money(6, 4), nullable=False),
            sa.Column("reasoning", sa.Text(), nullable=True),
            sa.Column(
                "execution_status",
                sa.Enum("PENDING", "EXECUTED", "FAILED", "CANCELLED", name="execution_status"),
                server_default=sa.text("'PENDING'"),
                nullable=True,
            ),
            sa.Column("entry_price", Money(15, 8), nullable=True),
            sa.Column("stop_loss", Money(15, 8), nullable=True),
            sa.Column("take_profit", Money(15, 8), nullable=True),
            sa.Column("position_size_percent", Money(5, 2), nullable=True),
            sa.Column("amount_crypto", Money(20, 8), nullable=True),
            sa.Column("is_mock", sa.Boolean(), server_default=sa.text("0"), nullable=True),
            sa.Column(
                "created_at",
                UtcDateTime(timestamp=True),
                server_default=sa.text("CURRENT_TIMESTAMP"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                UtcDateTime(timestamp=True),
                server_default=sa.text("CURRENT_TIMESTAMP"),
                nullable=True,
            ),
            sa.Column("executed_at", UtcDateTime(timestamp=True), nullable=True),
            sa.Column("pending_key", sa.String(length=80), nullable=True),
            sa.Column("claimed_by", sa.String(length=100), nullable=True),
            sa.Column("claimed_until", UtcDateTime(fsp=6), nullable=True),
            sa.Column("status_reason", sa.Text(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("pending_key", name="uq_trade_recommendations_pending_key"),
            sa.UniqueConstraint("signal_id", name="uq_trade_recommendations_signal_id"),
        )
        with op.batch_alter_table("trade_recommendations", schema=None) as batch_op:
            batch_op.create_index("idx_created_at", ["created_at"], unique=False)
            batch_op.create_index("idx_signal_id", ["signal_id"], unique=False)
            batch_op.create_index("idx_status", ["execution_status"], unique=False)
            batch_op.create_index("idx_symbol", ["symbol"], unique=False)

    if "trade_recommendations_archive" not in existing:
        op.create_table(
            "trade_recommendations_archive",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("signal_id", sa.Integer(), nullable=True),
            sa.Column("symbol", sa.String(length=50), nullable=False),
            sa.Column(
                "signal_type",
                sa.Enum("BUY", "SELL", "HOLD", "STRONG_BUY", "STRONG_SELL", name="recommendation_signal_type"),
                nullable=False,
            ),
            sa.Column("amount_usd", Money(15, 8), nullable=False),
            sa.Column("confidence", Money(6, 4), nullable=False),
            sa.Column("reasoning", sa.Text(), nullable=True),
            sa.Column(
                "execution_status",
                sa.Enum("PENDING", "EXECUTED", "FAILED", "CANCELLED", name="execution_status"),
                server_default=sa.text("'PENDING'"),
                nullable=True,
            ),
            sa.Column("entry_price", Money(15, 8), nullable=True),
            sa.Column("stop_loss", Money(15, 8), nullable=True),
            sa.Column("take_profit", Money(15, 8), nullable=True),
            sa.Column("position_size_percent", Money(5, 2), nullable=True),
            sa.Column("amount_crypto", Money(20, 8), nullable=True),
            sa.Column("is_mock", sa.Boolean(), server_default=sa.text("0"), nullable=True),
            sa.Column(
                "created_at",
                UtcDateTime(timestamp=True),
                server_default=sa.text("CURRENT_TIMESTAMP"),
                nullable=True,
            ),
            sa.Column(
                "updated_at",
                UtcDateTime(timestamp=True),
                server_default=sa.text("CURRENT_TIMESTAMP"),
                nullable=True,
            ),
            sa.Column("executed_at", UtcDateTime(timestamp=True), nullable=True),
            sa.Column("pending_key", sa.String(length=80), nullable=True),
            sa.Column("claimed_by", sa.String(length=100), nullable=True),
            sa.Column("claimed_until", UtcDateTime(fsp=6), nullable=True),
            sa.Column("status_reason", sa.Text(), nullable=True),
            sa.Column("archived_at", UtcDateTime(), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )

    if "trading_signals" not in existing:
        op.create_table(
            "trading_signals",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column(
                "timestamp",
                UtcDateTime(timestamp=True),
                server_default=sa.text("CURRENT_TIMESTAMP"),
                nullable=True,
            ),
            sa.Column("symbol", sa.String(length=50), nullable=False),
            sa.Column("price", Money(15, 8), server_default=sa.text("0.0"), nullable=True),
            sa.Column("signal_type", sa.Enum("BUY", "SELL", "HOLD", name="signal_type"), nullable=False),
            sa.Column("model", sa.String(length=100), nullable=True),
            sa.Column("confidence", Money(6, 4), nullable=False),
            sa.Column("threshold", Money(6, 4), server_default=sa.text("0.8"), nullable=True),
            sa.Column("regime", sa.String(length=50), server_default=sa.text("'bull'"), nullable=True),
            sa.Column("model_version", sa.String(length=100), nullable=True),
            sa.Column("features_used", sa.Integer(), server_default=sa.text("79"), nullable=True),
            sa.Column("xgboost_confidence", Money(6, 4), nullable=True),
            sa.Column("data_source", sa.String(length=100), server_default=sa.text("'database'"), nullable=True),
            sa.Column(
                "created_at",
                UtcDateTime(timestamp=True),
                server_default=sa.text("CURRENT_TIMESTAMP"),
                nullable=True,
            ),
            sa.Column("is_mock", sa.Boolean(), server_default=sa.text("0"), nullable=True),
            sa.Column("processed", sa.Boolean(), server_default=sa.text("0"), nullable=True),
            sa.Column("prediction", Money(6, 4), nullable=True),
            sa.Column("candle_time", UtcDateTime(), nullable=True),
            sa.Column("buy_probability", Money(6, 4), nullable=True),
            sa.Column("sell_probability", Money(6, 4), nullable=True),
            sa.Column("hold_probability", Money(6, 4), nullable=True),
            sa.Column("processed_reason", sa.String(length=100), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("symbol", "candle_time", name="uq_trading_signals_symbol_candle"),
        )
        with op.batch_alter_table("trading_signals", schema=None) as batch_op:
            batch_op.create_index("idx_signals_processed_created", ["processed", "created_at"], unique=False)
            batch_op.create_index("idx_signals_timestamp", ["timestamp"], unique=False)

    if "trading_signals_archive" not in existing:
        op.create_table(
            "trading_signals_archive",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column(
                "timestamp",
                UtcDateTime(timestamp=True),
                server_default=sa.text("CURRENT_TIMESTAMP"),
                nullable=True,
            ),
            sa.Column("symbol", sa.String(length=50), nullable=False),
            sa.Column("price", Money(15, 8), server_default=sa.text("0.0"), nullable=True),
            sa.Column("signal_type", sa.Enum("BUY", "SELL", "HOLD", name="signal_type"), nullable=False),
            sa.Column("model", sa.String(length=100), nullable=True),
            sa.Column("confidence", Money(6, 4), nullable=False),
            sa.Column("threshold", Money(6, 4), server_default=sa.text("0.8"), nullable=True),
            sa.Column("regime", sa.String(length=50), server_default=sa.text("'bull'"), nullable=True),
            sa.Column("model_version", sa.String(length=100), nullable=True),
            sa.Column("features_used", sa.Integer(), server_default=sa.text("79"), nullable=True),
            sa.Column("xgboost_confidence", Money(6, 4), nullable=True),
            sa.Column("data_source", sa.String(length=100), server_default=sa.text("'database'"), nullable=True),
            sa.Column(
                "created_at",
                UtcDateTime(timestamp=True),
                server_default=sa.text("CURRENT_TIMESTAMP"),
                nullable=True,
            ),
            sa.Column("is_mock", sa.Boolean(), server_default=sa.text("0"), nullable=True),
            sa.Column("processed", sa.Boolean(), server_default=sa.text("0"), nullable=True),
            sa.Column("prediction", Money(6, 4), nullable=True),
            sa.Column("candle_time", UtcDateTime(), nullable=True),
            sa.Column("buy_probability", Money(6, 4), nullable=True),
            sa.Column("sell_probability", Money(6, 4), nullable=True),
            sa.Column("hold_probability", Money(6, 4), nullable=True),
            sa.Column("processed_reason", sa.String(length=100), nullable=True),
            sa.Column("archived_at", UtcDateTime(), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )

    adopt.adopt(bind, existing)
    if bind.dialect.name in ("mysql", "mariadb") and "trade_recommendations" not in existing:
        # The original DDL: updated_at follows every UPDATE.
        op.execute(
            "ALTER TABLE trade_recommendations MODIFY updated_at TIMESTAMP NULL "
            "DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP"
        )


def downgrade() -> None:

    op.drop_table("trading_signals_archive")
    with op.batch_alter_table("trading_signals", schema=None) as batch_op:
        batch_op.drop_index("idx_signals_timestamp")
        batch_op.drop_index("idx_signals_processed_created")

    op.drop_table("trading_signals")
    op.drop_table("trade_recommendations_archive")
    with op.batch_alter_table("trade_recommendations", schema=None) as batch_op:
        batch_op.drop_index("idx_symbol")
        batch_op.drop_index("idx_status")
        batch_op.drop_index("idx_signal_id")
        batch_op.drop_index("idx_created_at")

    op.drop_table("trade_recommendations")
    with op.batch_alter_table("trade_executions", schema=None) as batch_op:
        batch_op.drop_index("idx_trade_executions_status")

    op.drop_table("trade_executions")
    op.drop_table("system_control")
    op.drop_table("paper_balances")
    with op.batch_alter_table("orchestrator_dispatches", schema=None) as batch_op:
        batch_op.drop_index("idx_orchestrator_dispatches_at")

    op.drop_table("orchestrator_dispatches")
    op.drop_table("market_candles")
