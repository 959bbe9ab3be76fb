"""trade_executions.lease_owner / lease_until: which executor works on a live order, until when

A live order is sent outside any database transaction: the executor first takes a short lease on its execution
row, so a second executor replica does not send the same order concurrently (if a lease runs out, the next sender
re-sends the same client_order_id and Coinbase answers with the order it already has).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from common.sqltypes import UtcDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("trade_executions") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("lease_until", UtcDateTime(fsp=6), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trade_executions") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")
