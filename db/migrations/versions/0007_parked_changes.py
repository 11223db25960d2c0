"""Parked webhook changes (for a number nobody owns yet, or unreadable), and the media checksum
failure kept on the media row.

`parked_changes` belongs to no tenant, so row-level security admits only the system scope: a
tenant's unit of work never sees another number's traffic. `media.retry_after` holds back a
fetch that failed its checksum for good; `media.checksum_mismatches` counts the attempts that did.

Revision ID: 0007
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "parked_changes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("digest", sa.Text(), nullable=False),
        sa.Column("phone_number_id", sa.Text(), nullable=True),
        sa.Column("waba_id", sa.Text(), nullable=True),
        sa.Column("field", sa.Text(), nullable=True),
        sa.Column("change", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parked_changes")),
        sa.UniqueConstraint("digest", name=op.f("uq_parked_changes_digest")),
    )
    op.create_index(op.f("ix_parked_changes_phone_number_id"), "parked_changes", ["phone_number_id"])
    op.create_index(op.f("ix_parked_changes_waba_id"), "parked_changes", ["waba_id"])
    op.create_index(op.f("ix_parked_changes_received_at"), "parked_changes", ["received_at"])
    op.execute(
        """
        ALTER TABLE parked_changes ENABLE ROW LEVEL SECURITY;
        ALTER TABLE parked_changes FORCE ROW LEVEL SECURITY;
        CREATE POLICY system_only ON parked_changes USING (app_is_system()) WITH CHECK (app_is_system());
        """
    )
    op.add_column(
        "media", sa.Column("checksum_mismatches", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("media", sa.Column("retry_after", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("media", "retry_after")
    op.drop_column("media", "checksum_mismatches")
    op.drop_table("parked_changes")
