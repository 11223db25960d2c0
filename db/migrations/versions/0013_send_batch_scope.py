"""The send batch's scope: the claims (or wamids) of several organizations' sends in one
statement, where a transaction per organization cost a statement, a scope and a commit each.

`app.organization_ids` names the batch's organizations; policies of their own (`db/rls.py`,
`SEND_BATCH_COMMANDS`) let it read and update messages, read early statuses, count usage and
append to the audit trail for those organizations only. Nothing else opens to it.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from db import rls

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(rls.enable_send_batch_scope())


def downgrade() -> None:
    op.execute(rls.disable_send_batch_scope())
