"""Inbound: the current reaction on a message, an index to find reactions by target, and routing
of account-level webhooks (no phone number) to their organization by WABA id.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 01:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db import inbound_sql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _app_role() -> str:
    role = op.get_context().config.attributes.get("app_role", "adsapp_app")  # type: ignore[union-attr]
    return str(role)


def upgrade() -> None:
    op.add_column("messages", sa.Column("reaction_emoji", sa.Text(), nullable=True))
    op.add_column("messages", sa.Column("reaction_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_messages_reaction_target",
        "messages",
        ["context_wamid"],
        unique=False,
        postgresql_where=sa.text("type = 'reaction'"),
    )
    op.execute(inbound_sql.FUNCTIONS)
    op.execute(inbound_sql.grant_functions(_app_role()))


def downgrade() -> None:
    op.execute(inbound_sql.DROP_FUNCTIONS)
    op.drop_index("ix_messages_reaction_target", table_name="messages")
    op.drop_column("messages", "reaction_at")
    op.drop_column("messages", "reaction_emoji")
