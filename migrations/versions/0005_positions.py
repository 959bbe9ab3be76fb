"""positions, and trade_recommendations.exit_reason: trade like a portfolio, not a stream of orders

A position per (mode, symbol) is opened by an executed BUY and closed, whole, by a SELL signal, its stop-loss, its
take-profit or its time limit; open_key keeps at most one open position per mode and symbol. exit_reason says why
a SELL recommendation closes a position (on the archive too: it has the same columns).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from common.sqltypes import Money, UtcDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    for table in ("trade_recommendations", "trade_recommendations_archive"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("exit_reason", sa.String(length=20), nullable=True))
    op.create_table(
        "positions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("mode", sa.Enum("PAPER", "LIVE", name="execution_mode"), nullable=False),
        sa.Column("symbol", sa.String(length=50), nullable=False),
        sa.Column("status", sa.Enum("OPEN", "CLOSED", name="position_status"), nullable=False),
        sa.Column("open_key", sa.String(length=80), nullable=True),
        sa.Column("quantity", Money(28, 10), nullable=False),
        sa.Column("entry_price", Money(24, 10), nullable=False),
        sa.Column("entry_cost", Money(20, 8), nullable=False),
        sa.Column("stop_loss", Money(24, 10), nullable=True),
        sa.Column("take_profit", Money(24, 10), nullable=True),
        sa.Column("opened_at", UtcDateTime(fsp=6), nullable=False),
        sa.Column("entry_recommendation_id", sa.Integer(), nullable=False),
        sa.Column("bracket_order_id", sa.String(length=100), nullable=True),
        sa.Column("closed_at", UtcDateTime(fsp=6), nullable=True),
        sa.Column("exit_recommendation_id", sa.Integer(), nullable=True),
        sa.Column(
            "exit_reason",
            sa.Enum("signal", "stop_loss", "take_profit", "time_limit", name="exit_reason"),
            nullable=True,
        ),
        sa.Column("exit_price", Money(24, 10), nullable=True),
        sa.Column("fees", Money(20, 8), nullable=False, server_default=sa.text("0")),
        sa.Column("realized_pnl", Money(20, 8), nullable=True),
        sa.Column("updated_at", UtcDateTime(fsp=6), nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.UniqueConstraint("open_key", name="uq_positions_open_key"),
        sa.UniqueConstraint("entry_recommendation_id", name="uq_positions_entry_recommendation"),
    )
    op.create_index("idx_positions_status", "positions", ["status"])


def downgrade() -> None:
    op.drop_index("idx_positions_status", table_name="positions")
    op.drop_table("positions")
    for table in ("trade_recommendations_archive", "trade_recommendations"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("exit_reason")
