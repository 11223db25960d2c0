"""Dead letters operators work with: error class and message, transient flag, the chain of retries,
sweep bookkeeping, discards; batch redrive tasks with their frozen set of letters; operator API keys.

Revision ID: 0009
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from db import rls

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_TENANT_TABLES = ("dead_letter_redrives", "dead_letter_redrive_items")

# The key resolver now says whether the key is an operator's; its result type changes, so it is
# dropped and created again (CREATE OR REPLACE cannot change a function's columns).
RESOLVE_API_KEY = """
CREATE FUNCTION app_resolve_api_key(p_key_hash text)
    RETURNS TABLE (id uuid, organization_id uuid, scopes jsonb, expires_at timestamptz,
                   revoked_at timestamptz, operator boolean)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public
    SET app.system = 'on'
    AS $$
        SELECT k.id, k.organization_id, k.scopes, k.expires_at, k.revoked_at, k.operator
        FROM api_keys k WHERE k.key_hash = p_key_hash
    $$;
"""

RESOLVE_API_KEY_BEFORE = """
CREATE FUNCTION app_resolve_api_key(p_key_hash text)
    RETURNS TABLE (id uuid, organization_id uuid, scopes jsonb, expires_at timestamptz,
                   revoked_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public
    SET app.system = 'on'
    AS $$
        SELECT k.id, k.organization_id, k.scopes, k.expires_at, k.revoked_at
        FROM api_keys k WHERE k.key_hash = p_key_hash
    $$;
"""


def _app_role() -> str:
    role = op.get_context().config.attributes.get("app_role", "adsapp_app")  # type: ignore[union-attr]
    return str(role)


def _resolver(sql: str) -> None:
    role = _app_role()
    op.execute("DROP FUNCTION IF EXISTS app_resolve_api_key(text)")
    op.execute(sql)
    op.execute("REVOKE ALL ON FUNCTION app_resolve_api_key(text) FROM PUBLIC")
    op.execute(f'GRANT EXECUTE ON FUNCTION app_resolve_api_key(text) TO "{role}"')


def upgrade() -> None:
    op.add_column(
        "api_keys", sa.Column("operator", sa.Boolean(), server_default=sa.text("false"), nullable=False)
    )
    _resolver(RESOLVE_API_KEY)

    op.add_column("dead_letters", sa.Column("error_class", sa.Text(), nullable=True))
    op.add_column("dead_letters", sa.Column("error_message", sa.Text(), nullable=True))
    op.add_column(
        "dead_letters", sa.Column("transient", sa.Boolean(), server_default=sa.text("false"), nullable=False)
    )
    op.add_column("dead_letters", sa.Column("retried_from", sa.UUID(), nullable=True))
    op.add_column("dead_letters", sa.Column("retry_message_id", sa.Text(), nullable=True))
    op.add_column(
        "dead_letters", sa.Column("sweeps", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("dead_letters", sa.Column("next_sweep_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("dead_letters", sa.Column("discarded_at", sa.DateTime(timezone=True), nullable=True))
    op.create_foreign_key(
        op.f("fk_dead_letters_retried_from_dead_letters"),
        "dead_letters",
        "dead_letters",
        ["retried_from"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(op.f("ix_dead_letters_retried_from"), "dead_letters", ["retried_from"], unique=False)
    op.create_index(
        "ix_dead_letters_last_failed_at_id", "dead_letters", ["last_failed_at", "id"], unique=False
    )
    op.create_index(
        "ix_dead_letters_status_next_sweep_at", "dead_letters", ["status", "next_sweep_at"], unique=False
    )
    op.create_check_constraint(
        op.f("ck_dead_letters_status"),
        "dead_letters",
        "status IN ('dead', 'retrying', 'retried', 'discarded')",
    )
    # Rows recorded before this revision: their error text is "Class: message".
    op.execute(
        "UPDATE dead_letters SET error_class = split_part(error, ':', 1), "
        "error_message = ltrim(substr(error, length(split_part(error, ':', 1)) + 2))"
    )

    op.create_table(
        "dead_letter_redrives",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=True),
        sa.Column("scope_key", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("fingerprint", sa.Text(), nullable=True),
        sa.Column("filter", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("max_per_second", sa.Float(), nullable=True),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("matched", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("moved", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("skipped", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'finished', 'cancelled')",
            name=op.f("ck_dead_letter_redrives_status"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_dead_letter_redrives_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letter_redrives")),
        sa.UniqueConstraint(
            "scope_key", "idempotency_key", name=op.f("uq_dead_letter_redrives_scope_key_idempotency_key")
        ),
    )
    op.create_index(
        op.f("ix_dead_letter_redrives_organization_id"),
        "dead_letter_redrives",
        ["organization_id"],
        unique=False,
    )
    op.create_index(
        "ix_dead_letter_redrives_status_lease_until",
        "dead_letter_redrives",
        ["status", "lease_until"],
        unique=False,
    )
    op.create_table(
        "dead_letter_redrive_items",
        sa.Column("redrive_id", sa.UUID(), nullable=False),
        sa.Column("dead_letter_id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["redrive_id"],
            ["dead_letter_redrives.id"],
            name=op.f("fk_dead_letter_redrive_items_redrive_id_dead_letter_redrives"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dead_letter_id"],
            ["dead_letters.id"],
            name=op.f("fk_dead_letter_redrive_items_dead_letter_id_dead_letters"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_dead_letter_redrive_items_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("redrive_id", "dead_letter_id", name=op.f("pk_dead_letter_redrive_items")),
    )
    op.create_index(
        op.f("ix_dead_letter_redrive_items_organization_id"),
        "dead_letter_redrive_items",
        ["organization_id"],
        unique=False,
    )
    op.create_index(
        "ix_dead_letter_redrive_items_dead_letter_id",
        "dead_letter_redrive_items",
        ["dead_letter_id"],
        unique=False,
    )
    role = _app_role()
    for table in NEW_TENANT_TABLES:
        op.execute(rls.enable_tenant_rls(table))
        op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO "{role}"')


def downgrade() -> None:
    for table in reversed(NEW_TENANT_TABLES):
        op.execute(rls.disable_rls(table))
    op.drop_index("ix_dead_letter_redrive_items_dead_letter_id", table_name="dead_letter_redrive_items")
    op.drop_index(
        op.f("ix_dead_letter_redrive_items_organization_id"), table_name="dead_letter_redrive_items"
    )
    op.drop_table("dead_letter_redrive_items")
    op.drop_index("ix_dead_letter_redrives_status_lease_until", table_name="dead_letter_redrives")
    op.drop_index(op.f("ix_dead_letter_redrives_organization_id"), table_name="dead_letter_redrives")
    op.drop_table("dead_letter_redrives")
    op.drop_constraint(op.f("ck_dead_letters_status"), "dead_letters", type_="check")
    op.drop_index("ix_dead_letters_status_next_sweep_at", table_name="dead_letters")
    op.drop_index("ix_dead_letters_last_failed_at_id", table_name="dead_letters")
    op.drop_index(op.f("ix_dead_letters_retried_from"), table_name="dead_letters")
    op.drop_constraint(op.f("fk_dead_letters_retried_from_dead_letters"), "dead_letters", type_="foreignkey")
    for column in (
        "discarded_at", "next_sweep_at", "sweeps", "retry_message_id", "retried_from", "transient",
        "error_message", "error_class",
    ):  # fmt: skip
        op.drop_column("dead_letters", column)
    _resolver(RESOLVE_API_KEY_BEFORE)
    op.drop_column("api_keys", "operator")
