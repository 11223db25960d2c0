"""Bulk items and chunks reference their job by (job, organization): one foreign key instead of
two, which also refuses an item or chunk of one tenant under another tenant's job. Their own
foreign key to organizations and its index go (the job's already cascades from its organization),
and the items' message index holds only the items that have a message.

Planning writes 100,000 items in one INSERT ... SELECT, where every foreign key is a trigger call
and every index an insertion per row: of the statement's time, the two job and organization checks
were about half, the two indexes about a fifth.

Revision ID: 0012
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHILDREN = ("bulk_job_items", "bulk_job_chunks")


def upgrade() -> None:
    op.create_unique_constraint(
        op.f("uq_bulk_jobs_id_organization_id"), "bulk_jobs", ["id", "organization_id"]
    )
    for table in CHILDREN:
        op.drop_constraint(op.f(f"fk_{table}_bulk_job_id_bulk_jobs"), table, type_="foreignkey")
        op.drop_constraint(op.f(f"fk_{table}_organization_id_organizations"), table, type_="foreignkey")
        op.drop_index(op.f(f"ix_{table}_organization_id"), table_name=table)
        op.create_foreign_key(
            op.f(f"fk_{table}_bulk_job_id_bulk_jobs"),
            table,
            "bulk_jobs",
            ["bulk_job_id", "organization_id"],
            ["id", "organization_id"],
            ondelete="CASCADE",
        )
    op.drop_index("ix_bulk_job_items_message_id", table_name="bulk_job_items")
    op.create_index(
        "ix_bulk_job_items_message_id",
        "bulk_job_items",
        ["message_id"],
        postgresql_where=sa.text("message_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_bulk_job_items_message_id", table_name="bulk_job_items")
    op.create_index("ix_bulk_job_items_message_id", "bulk_job_items", ["message_id"])
    for table in CHILDREN:
        op.drop_constraint(op.f(f"fk_{table}_bulk_job_id_bulk_jobs"), table, type_="foreignkey")
        op.create_index(op.f(f"ix_{table}_organization_id"), table, ["organization_id"])
        op.create_foreign_key(
            op.f(f"fk_{table}_organization_id_organizations"),
            table,
            "organizations",
            ["organization_id"],
            ["id"],
            ondelete="CASCADE",
        )
        op.create_foreign_key(
            op.f(f"fk_{table}_bulk_job_id_bulk_jobs"),
            table,
            "bulk_jobs",
            ["bulk_job_id"],
            ["id"],
            ondelete="CASCADE",
        )
    op.drop_constraint(op.f("uq_bulk_jobs_id_organization_id"), "bulk_jobs", type_="unique")
