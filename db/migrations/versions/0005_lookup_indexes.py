"""Indexes for the hot per-delivery lookups: a contact's conversations.

The partial unique index on conversations(contact_id) covers only non-resolved rows, so the
find-or-reopen lookup (which must also see resolved ones) scanned the whole table.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_conversations_contact_id", "conversations", ["contact_id"])


def downgrade() -> None:
    op.drop_index("ix_conversations_contact_id", table_name="conversations")
