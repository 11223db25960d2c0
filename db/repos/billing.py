"""Billing rows: the plan catalog, Stripe event records, subscription state and usage counters.

Every function runs on the caller's connection, inside its unit of work. The cross-tenant steps
(customer to organization, events that belong to nobody yet) go through the SECURITY DEFINER
functions of migration 0002, so billing work never needs a system-wide scope.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from db.tables import event_store, organizations, plan_lookup_keys, plans, usage_counters, webhook_events
from domain.billing.events import StripeEvent
from domain.billing.plans import FREE_PLAN, Plan, PlanCatalog
from domain.billing.policy import RefusalCode, SendDecision, Usage, can_send
from domain.billing.state import BillingState, Outcome

STRIPE_SOURCE: Final = "stripe"
MESSAGES_METRIC: Final = "messages"
BILLING_AGGREGATE: Final = "billing"

_STATE_COLUMNS: Final = (
    "plan",
    "subscription_status",
    "stripe_customer_id",
    "stripe_subscription_id",
    "stripe_price_id",
    "cancel_at_period_end",
    "trial_end",
    "current_period_end",
    "billing_event_at",
)


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    row_id: UUID
    event_id: str
    payload: Mapping[str, Any]


# --- the plan catalog ---------------------------------------------------------------------------


def load_catalog(conn: Connection) -> PlanCatalog:
    plan_rows = conn.execute(sa.select(plans.c.name, plans.c.monthly_message_quota, plans.c.bulk_allowed))
    keys = conn.execute(sa.select(plan_lookup_keys.c.lookup_key, plan_lookup_keys.c.plan))
    return PlanCatalog(
        plans={r.name: Plan(r.name, r.monthly_message_quota, r.bulk_allowed) for r in plan_rows},
        lookup_keys={r.lookup_key: r.plan for r in keys},
    )


# --- routing a Stripe customer to its organization ------------------------------------------------


def lock_customer(conn: Connection, customer_id: str) -> None:
    """Serialize, per customer, recording an event as unattached with linking that customer.

    Without it an event could be recorded as unknown just after a checkout linked its customer and
    claimed the waiting events, and would then wait forever.
    """
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"stripe-customer:{customer_id}"},
    )


def resolve_customer(conn: Connection, customer_id: str) -> UUID | None:
    value = conn.execute(sa.text("SELECT app_resolve_stripe_customer(:c)"), {"c": customer_id}).scalar()
    return UUID(str(value)) if value is not None else None


def record_unattached(
    conn: Connection, event: StripeEvent, received_at: datetime | None, outcome: Outcome
) -> bool:
    """Record an event that belongs to no organization; False when it was recorded before."""
    inserted = conn.execute(
        sa.text(
            "SELECT app_record_unattached_stripe_event("
            ":id, :type, :created, :received, :outcome, CAST(:payload AS jsonb))"
        ),
        {
            "id": event.id,
            "type": event.type,
            "created": event.created,
            "received": received_at,
            "outcome": str(outcome),
            "payload": json.dumps(event.raw),
        },
    ).scalar_one()
    return bool(inserted)


def claim_unattached(conn: Connection, customer_id: str) -> list[ParkedEvent]:
    """Take over the events recorded for `customer_id` while no organization owned it.

    Only works once the scoped organization owns the customer (the function checks).
    """
    rows = conn.execute(sa.text("SELECT * FROM app_claim_stripe_events(:c)"), {"c": customer_id}).all()
    return [ParkedEvent(UUID(str(r.id)), r.event_id, r.payload) for r in rows]


# --- events of one organization -----------------------------------------------------------------


def record_event(
    conn: Connection, organization_id: UUID, event: StripeEvent, received_at: datetime | None
) -> UUID | None:
    """Record the event for the organization; None when this event id was recorded before."""
    stmt = (
        insert(webhook_events)
        .values(
            organization_id=organization_id,
            source=STRIPE_SOURCE,
            event_id=event.id,
            event_type=event.type,
            event_created_at=event.created,
            received_at=received_at,
            payload=dict(event.raw),
        )
        .on_conflict_do_nothing(index_elements=[webhook_events.c.source, webhook_events.c.event_id])
        .returning(webhook_events.c.id)
    )
    value = conn.execute(stmt).scalar()
    return UUID(str(value)) if value is not None else None


def finish_event(conn: Connection, row_id: UUID, outcome: Outcome) -> None:
    conn.execute(
        sa.update(webhook_events)
        .where(webhook_events.c.id == row_id)
        .values(outcome=str(outcome), processed_at=sa.func.now(), updated_at=sa.func.now())
    )


def lock_state(conn: Connection, organization_id: UUID) -> BillingState | None:
    """The organization's billing state, locked until the transaction ends; None if it is unknown."""
    columns = [organizations.c[name] for name in _STATE_COLUMNS]
    row = conn.execute(
        sa.select(*columns).where(organizations.c.id == organization_id).with_for_update()
    ).one_or_none()
    if row is None:
        return None
    return BillingState(**{name: getattr(row, name) for name in _STATE_COLUMNS})


def save_state(conn: Connection, organization_id: UUID, state: BillingState) -> None:
    values = {name: getattr(state, name) for name in _STATE_COLUMNS}
    conn.execute(
        sa.update(organizations)
        .where(organizations.c.id == organization_id)
        .values(**values, updated_at=sa.func.now())
    )


def append_event(
    conn: Connection, organization_id: UUID, event_type: str, payload: Mapping[str, Any]
) -> None:
    conn.execute(
        sa.insert(event_store).values(
            organization_id=organization_id,
            aggregate_type=BILLING_AGGREGATE,
            aggregate_id=str(organization_id),
            event_type=event_type,
            payload=dict(payload),
        )
    )


# --- usage and the send policy ------------------------------------------------------------------


def period_of(at: datetime | None = None) -> str:
    """The usage period: the calendar month in UTC, as 'YYYY-MM'."""
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m")


def count_usage(
    conn: Connection, organization_id: UUID, metric: str, n: int = 1, *, at: datetime | None = None
) -> int:
    """Add `n` to this month's counter of `metric`; returns the new total."""
    stmt = insert(usage_counters).values(
        organization_id=organization_id, period=period_of(at), metric=metric, value=n
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=[usage_counters.c.organization_id, usage_counters.c.period, usage_counters.c.metric],
        set_={"value": usage_counters.c.value + stmt.excluded.value},
    ).returning(usage_counters.c.value)
    return int(conn.execute(upsert).scalar_one())


def usage_of(
    conn: Connection, organization_id: UUID, metric: str = MESSAGES_METRIC, *, at: datetime | None = None
) -> int:
    value = conn.execute(
        sa.select(usage_counters.c.value).where(
            usage_counters.c.organization_id == organization_id,
            usage_counters.c.period == period_of(at),
            usage_counters.c.metric == metric,
        )
    ).scalar()
    return int(value or 0)


# The organization's plan name and status, this period's usage, and the catalog rows its terms can
# come from (its plan, and the free plan that stands in for a missing one), in one round trip: the
# send worker asks this every few seconds per organization.
_STANDING = sa.text(
    """
    SELECT o.plan, o.subscription_status,
           (SELECT u.value FROM usage_counters u
            WHERE u.organization_id = o.id AND u.period = :period AND u.metric = :metric) AS used,
           p.name AS plan_name, p.monthly_message_quota, p.bulk_allowed
    FROM organizations o
    LEFT JOIN plans p ON p.name IN (coalesce(o.plan, :free), :free)
    WHERE o.id = :org
    """
)


@dataclass(frozen=True, slots=True)
class _Standing:
    plan: Plan
    status: str | None
    used: int


def _standing(conn: Connection, organization_id: UUID, at: datetime | None = None) -> _Standing | None:
    rows = conn.execute(
        _STANDING,
        {"org": organization_id, "period": period_of(at), "metric": MESSAGES_METRIC, "free": FREE_PLAN},
    ).all()
    if not rows:
        return None
    catalog = PlanCatalog(
        plans={
            r.plan_name: Plan(r.plan_name, r.monthly_message_quota, r.bulk_allowed)
            for r in rows
            if r.plan_name is not None
        }
    )
    first = rows[0]
    return _Standing(catalog.get(first.plan), first.subscription_status, int(first.used or 0))


def check_send_allowed(
    conn: Connection, organization_id: UUID, n: int = 1, bulk: bool = False, *, at: datetime | None = None
) -> SendDecision:
    """May the organization send `n` more messages (as a bulk job when `bulk`)? Reads only.

    The send API calls it before accepting a message or a bulk job; a send worker calls it (or
    `reserve_sends`) before sending a queued message, and fails the message with the refusal's
    code when it is refused.
    """
    standing = _standing(conn, organization_id, at)
    if standing is None:
        raise LookupError(f"organization {organization_id} is not visible in this scope")
    return can_send(standing.status, standing.plan, Usage(standing.used), n=n, bulk=bulk)


def reserve_sends(
    conn: Connection, organization_id: UUID, n: int = 1, bulk: bool = False, *, at: datetime | None = None
) -> SendDecision:
    """`check_send_allowed`, and when allowed count the `n` messages, atomically.

    The counter only moves while it stays within the quota (one conditional UPDATE), so concurrent
    senders of one organization cannot overrun it between their check and their count.
    """
    decision = check_send_allowed(conn, organization_id, n, bulk, at=at)
    if not decision.allowed:
        return decision
    standing = _standing(conn, organization_id, at)
    assert standing is not None
    quota = standing.plan.monthly_message_quota
    period = period_of(at)
    conn.execute(
        insert(usage_counters)
        .values(organization_id=organization_id, period=period, metric=MESSAGES_METRIC, value=0)
        .on_conflict_do_nothing()
    )
    key = (
        (usage_counters.c.organization_id == organization_id)
        & (usage_counters.c.period == period)
        & (usage_counters.c.metric == MESSAGES_METRIC)
    )
    within = key if quota is None else key & (usage_counters.c.value + n <= quota)
    counted = conn.execute(
        sa.update(usage_counters).where(within).values(value=usage_counters.c.value + n)
    ).rowcount
    if counted:
        return decision
    # Someone else used the rest of the quota since the check: answer with the current numbers.
    again = check_send_allowed(conn, organization_id, n, bulk, at=at)
    if again.allowed:
        return SendDecision(False, RefusalCode.QUOTA_EXCEEDED, "The month's message quota is used up.")
    return again
