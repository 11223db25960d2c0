"""Bulk jobs as durable objects: job counters and idempotency, items with chunk and result,
chunk rows (claimed, submitted, settled), tags on contacts and conversations, and the number's
messaging limit (unique recipients per rolling 24 hours).

Revision ID: 0011
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from db import rls

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_STATUSES = (
    "'pending', 'running', 'paused', 'cancelling', 'cancelled', 'completed', "
    "'completed_with_errors', 'failed'"
)
JOB_KINDS = "'broadcast', 'conversations.update', 'contacts.import'"
ITEM_STATUSES = "'pending', 'submitted', 'succeeded', 'failed', 'skipped', 'cancelled'"
CHUNK_STATUSES = "'pending', 'submitted', 'done', 'cancelled'"
MESSAGING_LIMITS = "250, 2000, 10000, 100000"


def _int(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False)


def upgrade() -> None:
    for name in ("skipped", "cancelled", "chunks"):
        op.add_column("bulk_jobs", _int(name))
    op.add_column("bulk_jobs", sa.Column("chunk_size", sa.Integer(), server_default="100", nullable=False))
    op.add_column("bulk_jobs", sa.Column("request_fingerprint", sa.Text(), nullable=True))
    op.add_column("bulk_jobs", sa.Column("error_code", sa.Text(), nullable=True))
    op.add_column("bulk_jobs", sa.Column("error_message", sa.Text(), nullable=True))
    op.create_check_constraint(op.f("ck_bulk_jobs_status_known"), "bulk_jobs", f"status in ({JOB_STATUSES})")
    op.create_check_constraint(op.f("ck_bulk_jobs_kind_known"), "bulk_jobs", f"kind in ({JOB_KINDS})")
    op.create_index(
        "uq_bulk_jobs_org_idempotency_key",
        "bulk_jobs",
        ["organization_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_index(
        "ix_bulk_jobs_org_created", "bulk_jobs", ["organization_id", sa.text("created_at DESC"), "id"]
    )

    op.add_column("bulk_job_items", _int("chunk"))
    op.add_column("bulk_job_items", sa.Column("contact_id", sa.UUID(), nullable=True))
    op.add_column("bulk_job_items", sa.Column("error_code", sa.Text(), nullable=True))
    op.add_column("bulk_job_items", sa.Column("error_title", sa.Text(), nullable=True))
    op.add_column("bulk_job_items", sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_column("bulk_job_items", "error")
    op.create_foreign_key(
        op.f("fk_bulk_job_items_contact_id_contacts"),
        "bulk_job_items",
        "contacts",
        ["contact_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_check_constraint(
        op.f("ck_bulk_job_items_status_known"), "bulk_job_items", f"status in ({ITEM_STATUSES})"
    )
    op.create_index("ix_bulk_job_items_job_chunk", "bulk_job_items", ["bulk_job_id", "chunk"])
    op.create_index("ix_bulk_job_items_message_id", "bulk_job_items", ["message_id"])

    op.create_table(
        "bulk_job_chunks",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("bulk_job_id", sa.UUID(), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("released", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(f"status in ({CHUNK_STATUSES})", name=op.f("ck_bulk_job_chunks_status_known")),
        sa.ForeignKeyConstraint(
            ["bulk_job_id"],
            ["bulk_jobs.id"],
            name=op.f("fk_bulk_job_chunks_bulk_job_id_bulk_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_bulk_job_chunks_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bulk_job_id", "chunk", name=op.f("pk_bulk_job_chunks")),
    )
    op.create_index(
        op.f("ix_bulk_job_chunks_organization_id"), "bulk_job_chunks", ["organization_id"], unique=False
    )
    op.create_index(
        "ix_bulk_job_chunks_unsettled",
        "bulk_job_chunks",
        ["updated_at"],
        postgresql_where=sa.text("released AND status IN ('pending', 'submitted')"),
    )
    op.execute(rls.enable_tenant_rls("bulk_job_chunks"))

    for table in ("contacts", "conversations"):
        op.add_column(
            table,
            sa.Column(
                "tags", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'::text[]"), nullable=False
            ),
        )
        op.create_index(f"ix_{table}_tags", table, ["tags"], postgresql_using="gin")
    op.add_column("whatsapp_numbers", sa.Column("messaging_limit", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_whatsapp_numbers_messaging_limit_known"),
        "whatsapp_numbers",
        f"messaging_limit IS NULL OR messaging_limit IN ({MESSAGING_LIMITS})",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_whatsapp_numbers_messaging_limit_known"), "whatsapp_numbers", type_="check")
    op.drop_column("whatsapp_numbers", "messaging_limit")
    for table in ("contacts", "conversations"):
        op.drop_index(f"ix_{table}_tags", table_name=table)
        op.drop_column(table, "tags")
    op.execute(rls.disable_rls("bulk_job_chunks"))
    op.drop_index("ix_bulk_job_chunks_unsettled", table_name="bulk_job_chunks")
    op.drop_index(op.f("ix_bulk_job_chunks_organization_id"), table_name="bulk_job_chunks")
    op.drop_table("bulk_job_chunks")
    op.drop_index("ix_bulk_job_items_message_id", table_name="bulk_job_items")
    op.drop_index("ix_bulk_job_items_job_chunk", table_name="bulk_job_items")
    op.drop_constraint(op.f("ck_bulk_job_items_status_known"), "bulk_job_items", type_="check")
    op.drop_constraint(op.f("fk_bulk_job_items_contact_id_contacts"), "bulk_job_items", type_="foreignkey")
    op.add_column("bulk_job_items", sa.Column("error", sa.Text(), nullable=True))
    for name in ("settled_at", "error_title", "error_code", "contact_id", "chunk"):
        op.drop_column("bulk_job_items", name)
    op.drop_index("ix_bulk_jobs_org_created", table_name="bulk_jobs")
    op.drop_index("uq_bulk_jobs_org_idempotency_key", table_name="bulk_jobs")
    op.drop_constraint(op.f("ck_bulk_jobs_kind_known"), "bulk_jobs", type_="check")
    op.drop_constraint(op.f("ck_bulk_jobs_status_known"), "bulk_jobs", type_="check")
    for name in (
        "error_message", "error_code", "request_fingerprint", "chunk_size", "chunks", "cancelled", "skipped"
    ):  # fmt: skip
        op.drop_column("bulk_jobs", name)
