"""Outbound sends: the fingerprint of the request an idempotency key was first used with, and an
index for the sweeps that find sends stuck in `queued` or `sending`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 03:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = "direction = 'outbound' AND status IN ('queued', 'sending')"


def upgrade() -> None:
    op.add_column("messages", sa.Column("request_fingerprint", sa.Text(), nullable=True))
    op.create_index(
        "ix_messages_outbound_pending",
        "messages",
        ["status", "updated_at"],
        unique=False,
        postgresql_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_outbound_pending", table_name="messages", postgresql_where=sa.text(PENDING))
    op.drop_column("messages", "request_fingerprint")
