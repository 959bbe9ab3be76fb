"""system_control 'installation_id': a random id created once with the database

Every client_order_id this installation sends is derived from it and the recommendation id
(executor_svc.client_order_id), so a new or re-created database, or a second environment on the same Coinbase key,
never repeats another installation's ids; a restored backup keeps its id.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 01:30:00
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

KEY = "installation_id"
_control = sa.table("system_control", sa.column("key"), sa.column("value"), sa.column("updated_by"))


def upgrade() -> None:
    bind = op.get_bind()
    if bind.execute(sa.select(_control.c.value).where(_control.c.key == KEY)).first() is None:
        bind.execute(sa.insert(_control).values(key=KEY, value=str(uuid.uuid4()), updated_by="cts migrate"))


def downgrade() -> None:
    op.execute(sa.delete(_control).where(_control.c.key == KEY))
