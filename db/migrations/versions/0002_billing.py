"""Billing: the plan catalog (Stripe price lookup keys to plans and their limits) and the narrow
cross-tenant functions the Stripe worker needs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 01:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here on purpose: later changes to the catalog are data migrations of their own.
PLANS = (
    # name, monthly message quota (None: unlimited), bulk jobs allowed
    ("free", 1_000, False),
    ("starter", 10_000, False),
    ("pro", 100_000, True),
    ("enterprise", None, True),
)
LOOKUP_KEYS = (
    ("starter", "starter"),
    ("starter_monthly", "starter"),
    ("starter_yearly", "starter"),
    ("pro", "pro"),
    ("pro_monthly", "pro"),
    ("pro_yearly", "pro"),
    ("enterprise", "enterprise"),
    ("enterprise_monthly", "enterprise"),
    ("enterprise_yearly", "enterprise"),
)


# The billing worker starts from a Stripe customer id, not from a tenant: these are its only
# cross-tenant reads and writes. SECURITY DEFINER functions keep them narrow (one fact out, or rows
# that belong to nobody yet), so the worker never needs a system-wide unit of work.
#
# - app_resolve_stripe_customer: which organization owns a customer id.
# - app_record_unattached_stripe_event: record an event that belongs to no organization (yet),
#   deduplicated on the event id like every other.
# - app_claim_stripe_events: once the calling organization owns the customer, take over the events
#   recorded for it while it was unknown, so they can be applied in order.
#   'unknown_customer' is the outcome workers/billing writes for such events.
FUNCTIONS = """
CREATE OR REPLACE FUNCTION app_resolve_stripe_customer(p_customer text)
    RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public
    SET app.system = 'on'
    AS $$ SELECT o.id FROM organizations o WHERE o.stripe_customer_id = p_customer $$;

CREATE OR REPLACE FUNCTION app_record_unattached_stripe_event(
        p_event_id text, p_event_type text, p_created timestamptz, p_received timestamptz,
        p_outcome text, p_payload jsonb)
    RETURNS boolean
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = public
    SET app.system = 'on'
    AS $$
        WITH inserted AS (
            INSERT INTO webhook_events (source, event_id, event_type, event_created_at, received_at,
                                        processed_at, outcome, payload, organization_id)
            VALUES ('stripe', p_event_id, p_event_type, p_created, p_received, now(), p_outcome,
                    p_payload, NULL)
            ON CONFLICT (source, event_id) DO NOTHING
            RETURNING 1
        )
        SELECT EXISTS (SELECT 1 FROM inserted)
    $$;

CREATE OR REPLACE FUNCTION app_claim_stripe_events(p_customer text)
    RETURNS TABLE (id uuid, event_id text, payload jsonb)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = public
    SET app.system = 'on'
    AS $$
        UPDATE webhook_events w
        SET organization_id = o.id, updated_at = now()
        FROM organizations o
        WHERE o.id = app_current_org() AND o.stripe_customer_id = p_customer
          AND w.source = 'stripe' AND w.organization_id IS NULL AND w.outcome = 'unknown_customer'
          AND w.payload -> 'data' -> 'object' ->> 'customer' = p_customer
        RETURNING w.id, w.event_id, w.payload
    $$;
"""

FUNCTION_SIGNATURES = (
    "app_resolve_stripe_customer(text)",
    "app_record_unattached_stripe_event(text, text, timestamptz, timestamptz, text, jsonb)",
    "app_claim_stripe_events(text)",
)


def _app_role() -> str:
    role = op.get_context().config.attributes.get("app_role", "adsapp_app")  # type: ignore[union-attr]
    return str(role)


def upgrade() -> None:
    plans = op.create_table(
        "plans",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("monthly_message_quota", sa.BigInteger(), nullable=True),
        sa.Column("bulk_allowed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "monthly_message_quota IS NULL OR monthly_message_quota >= 0",
            name=op.f("ck_plans_quota_not_negative"),
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_plans")),
    )
    lookup_keys = op.create_table(
        "plan_lookup_keys",
        sa.Column("lookup_key", sa.Text(), nullable=False),
        sa.Column("plan", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan"],
            ["plans.name"],
            name=op.f("fk_plan_lookup_keys_plan_plans"),
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("lookup_key", name=op.f("pk_plan_lookup_keys")),
    )
    op.create_index(op.f("ix_plan_lookup_keys_plan"), "plan_lookup_keys", ["plan"], unique=False)
    op.bulk_insert(
        plans,
        [{"name": n, "monthly_message_quota": q, "bulk_allowed": b} for n, q, b in PLANS],
    )
    op.bulk_insert(lookup_keys, [{"lookup_key": k, "plan": p} for k, p in LOOKUP_KEYS])

    role = _app_role()
    # A global catalog, not tenant data: no row-level security, and the application only reads it
    # (0001's default privileges would also let it write).
    op.execute(f'REVOKE ALL ON plans, plan_lookup_keys FROM "{role}"')
    op.execute(f'GRANT SELECT ON plans, plan_lookup_keys TO "{role}"')
    op.execute(FUNCTIONS)
    for signature in FUNCTION_SIGNATURES:
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f'GRANT EXECUTE ON FUNCTION {signature} TO "{role}"')


def downgrade() -> None:
    for signature in FUNCTION_SIGNATURES:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    op.drop_index(op.f("ix_plan_lookup_keys_plan"), table_name="plan_lookup_keys")
    op.drop_table("plan_lookup_keys")
    op.drop_table("plans")
