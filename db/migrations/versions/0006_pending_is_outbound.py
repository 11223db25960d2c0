"""Only outbound messages are ever queued, sending or ambiguous: a check constraint says so.

The send path's claim finds its message by primary key and status alone, relying on this
invariant; naming the direction there made the partial index of pending sends match, and a
planner with statistics older than a burst of queued sends chose it over the primary key.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_check_constraint(
        op.f("ck_messages_pending_is_outbound"),
        "messages",
        "direction = 'outbound' OR status NOT IN ('queued', 'sending', 'ambiguous')",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_messages_pending_is_outbound"), "messages", type_="check")
