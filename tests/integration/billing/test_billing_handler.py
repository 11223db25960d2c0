"""The billing handler on the real Postgres, as the application role, with realistic Stripe events."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from db.repos import billing as repo
from db.uow import UnitOfWork
from domain.billing.policy import RefusalCode
from domain.billing.state import Outcome
from tests.support import stripe_events as se
from tests.support.billing import org_row, store_events, webhook_row
from workers.billing.handler import Handled

pytestmark = pytest.mark.integration

T0 = se.BASE_TIME
Send = Callable[..., Handled]


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def meta(org: uuid.UUID) -> dict[str, str]:
    return {"organization_id": str(org)}


def linked(send: Send, org: uuid.UUID, shape: se.Shape = "basil") -> tuple[str, str]:
    """An organization that went through checkout: its customer and subscription ids."""
    customer, sub_id = se.new_id("cus"), se.new_id("sub")
    checkout = se.checkout_session(customer, sub_id, client_reference_id=str(org))
    assert (
        send(se.event("checkout.session.completed", checkout, created=T0, shape=shape)).outcome
        is Outcome.APPLIED
    )
    return customer, sub_id


@pytest.mark.parametrize("shape", ["basil", "legacy"])
def test_trial_to_active_with_a_duplicate_invoice_paid_applied_once(
    engine: Engine, owner_engine: Engine, new_org: Callable[[], uuid.UUID], send: Send, shape: se.Shape
) -> None:
    org = new_org()
    customer, sub_id = linked(send, org, shape)
    trial = se.subscription(
        sub_id, customer, "trialing", shape=shape, trial_end=T0 + 14 * 86400, period_end=T0 + 14 * 86400
    )
    assert (
        send(se.event("customer.subscription.created", trial, created=T0, shape=shape)).outcome
        is Outcome.APPLIED
    )
    row = org_row(engine, org)
    assert (row.subscription_status, row.plan, row.trial_end) == ("trialing", "pro", at(T0 + 14 * 86400))

    renewal = T0 + 14 * 86400
    paid = se.event(
        "invoice.paid",
        se.invoice(customer, sub_id, shape=shape, period_start=renewal, period_end=renewal + se.MONTH),
        created=renewal + 3,
        shape=shape,
    )
    first = send(paid)
    again = send(paid)
    assert (first.outcome, again.outcome) == (Outcome.APPLIED, Outcome.DUPLICATE)
    row = org_row(engine, org)
    assert row.subscription_status == "active"
    assert row.current_period_end == at(renewal + se.MONTH)
    assert row.billing_event_at == at(renewal + 3)
    assert webhook_row(owner_engine, paid["id"]).outcome == "applied"
    invoices = [e for e in store_events(engine, org) if e["stripe_event_id"] == paid["id"]]
    assert len(invoices) == 1
    assert invoices[0]["changes"]["subscription_status"] == {"from": "trialing", "to": "active"}


@pytest.mark.parametrize("shape", ["basil", "legacy"])
def test_payment_failure_makes_it_past_due(
    engine: Engine, new_org: Callable[[], uuid.UUID], send: Send, shape: se.Shape
) -> None:
    org = new_org()
    customer, sub_id = linked(send, org, shape)
    send(
        se.event(
            "customer.subscription.created",
            se.subscription(sub_id, customer, "active", shape=shape),
            created=T0,
            shape=shape,
        )
    )
    failed = se.invoice(
        customer, sub_id, shape=shape, status="open", period_start=T0 + se.MONTH, period_end=T0 + 2 * se.MONTH
    )
    assert (
        send(se.event("invoice.payment_failed", failed, created=T0 + se.MONTH, shape=shape)).outcome
        is Outcome.APPLIED
    )
    assert org_row(engine, org).subscription_status == "past_due"
    # Stripe's own update of the subscription, one second later, agrees.
    past_due = se.subscription(
        sub_id, customer, "past_due", shape=shape, period_start=T0 + se.MONTH, period_end=T0 + 2 * se.MONTH
    )
    assert (
        send(
            se.event("customer.subscription.updated", past_due, created=T0 + se.MONTH + 1, shape=shape)
        ).outcome
        is Outcome.APPLIED
    )
    assert org_row(engine, org).current_period_end == at(T0 + 2 * se.MONTH)
    with UnitOfWork(engine, organization_id=org) as uow:
        assert repo.check_send_allowed(uow.conn, org).allowed  # Stripe is still retrying


def test_plan_change_follows_the_price_lookup_key(
    engine: Engine, new_org: Callable[[], uuid.UUID], send: Send
) -> None:
    org = new_org()
    customer, sub_id = linked(send, org)
    send(
        se.event(
            "customer.subscription.created",
            se.subscription(sub_id, customer, "active", lookup_key="starter_monthly"),
            created=T0,
        )
    )
    assert org_row(engine, org).plan == "starter"
    with UnitOfWork(engine, organization_id=org) as uow:
        assert repo.check_send_allowed(uow.conn, org, bulk=True).code is RefusalCode.BULK_NOT_ALLOWED
    upgraded = se.subscription(sub_id, customer, "active", lookup_key="pro_yearly", price_id="price_pro_y")
    assert (
        send(se.event("customer.subscription.updated", upgraded, created=T0 + 60)).outcome is Outcome.APPLIED
    )
    row = org_row(engine, org)
    assert (row.plan, row.stripe_price_id) == ("pro", "price_pro_y")
    with UnitOfWork(engine, organization_id=org) as uow:
        assert repo.check_send_allowed(uow.conn, org, bulk=True).allowed
    change = store_events(engine, org)[-1]
    assert change["changes"]["plan"] == {"from": "starter", "to": "pro"}


def test_an_older_update_arriving_after_a_newer_one_is_ignored(
    engine: Engine, owner_engine: Engine, new_org: Callable[[], uuid.UUID], send: Send
) -> None:
    org = new_org()
    customer, sub_id = linked(send, org)
    newer = se.event(
        "customer.subscription.updated",
        se.subscription(sub_id, customer, "active", lookup_key="pro_monthly"),
        created=T0 + 100,
    )
    older = se.event(
        "customer.subscription.updated",
        se.subscription(sub_id, customer, "past_due", lookup_key="starter_monthly"),
        created=T0 + 50,
    )
    assert send(newer).outcome is Outcome.APPLIED
    assert send(older).outcome is Outcome.STALE
    row = org_row(engine, org)
    assert (row.subscription_status, row.plan, row.billing_event_at) == ("active", "pro", at(T0 + 100))
    assert webhook_row(owner_engine, older["id"]).outcome == "stale"


def test_a_late_update_after_deletion_does_not_resurrect(
    engine: Engine, new_org: Callable[[], uuid.UUID], send: Send
) -> None:
    org = new_org()
    customer, sub_id = linked(send, org)
    send(se.event("customer.subscription.created", se.subscription(sub_id, customer, "active"), created=T0))
    deleted = se.subscription(sub_id, customer, "canceled", canceled_at=T0 + 500)
    assert (
        send(se.event("customer.subscription.deleted", deleted, created=T0 + 500)).outcome is Outcome.APPLIED
    )
    late = se.subscription(sub_id, customer, "active", cancel_at_period_end=True)
    assert send(se.event("customer.subscription.updated", late, created=T0 + 400)).outcome is Outcome.ENDED
    assert send(se.event("customer.subscription.updated", late, created=T0 + 500)).outcome is Outcome.ENDED
    assert (
        send(se.event("invoice.paid", se.invoice(customer, sub_id), created=T0 + 600)).outcome
        is Outcome.NO_CHANGE
    )
    assert org_row(engine, org).subscription_status == "canceled"
    with UnitOfWork(engine, organization_id=org) as uow:
        refusal = repo.check_send_allowed(uow.conn, org)
    assert refusal.code is RefusalCode.SUBSCRIPTION_CANCELED
    assert refusal.as_error() == {
        "code": "subscription_canceled",
        "message": "The subscription has been canceled.",
    }


@pytest.mark.parametrize("shape", ["basil", "legacy"])
def test_subscription_created_before_checkout_still_ends_right(
    engine: Engine, owner_engine: Engine, new_org: Callable[[], uuid.UUID], send: Send, shape: se.Shape
) -> None:
    org = new_org()
    customer, sub_id = se.new_id("cus"), se.new_id("sub")
    created = se.event(
        "customer.subscription.created",
        se.subscription(sub_id, customer, "incomplete", shape=shape),
        created=T0,
        shape=shape,
    )
    updated = se.event(
        "customer.subscription.updated",
        se.subscription(sub_id, customer, "active", shape=shape),
        created=T0 + 1,
        shape=shape,
    )
    invoice = se.event(
        "invoice.paid",
        se.invoice(customer, sub_id, shape=shape, billing_reason="subscription_create"),
        created=T0 + 1,
        shape=shape,
    )
    # Delivered before the checkout, and out of order among themselves.
    assert [send(e).outcome for e in (updated, invoice, created)] == [Outcome.UNKNOWN_CUSTOMER] * 3
    parked = webhook_row(owner_engine, updated["id"])
    assert (parked.organization_id, parked.outcome) == (None, "unknown_customer")

    checkout = se.event(
        "checkout.session.completed",
        se.checkout_session(customer, sub_id, client_reference_id=str(org)),
        created=T0 + 2,
        shape=shape,
    )
    done = send(checkout)
    assert done.outcome is Outcome.APPLIED
    # Replayed oldest first; the two of the same second in either order, ending the same way.
    replayed = {h.event_id: h.outcome for h in done.replayed}
    assert done.replayed[0].event_id == created["id"]
    assert replayed.keys() == {created["id"], updated["id"], invoice["id"]}
    assert replayed[created["id"]] is Outcome.APPLIED
    assert {replayed[updated["id"]], replayed[invoice["id"]]} == {Outcome.APPLIED, Outcome.NO_CHANGE}
    row = org_row(engine, org)
    assert (row.stripe_customer_id, row.stripe_subscription_id, row.subscription_status, row.plan) == (
        customer,
        sub_id,
        "active",
        "pro",
    )
    claimed = webhook_row(owner_engine, updated["id"])
    assert (claimed.organization_id, claimed.outcome) == (org, replayed[updated["id"]].value)
    # A redelivery of a claimed event is a duplicate like any other.
    assert send(updated).outcome is Outcome.DUPLICATE


def test_metadata_links_an_organization_without_a_checkout(
    engine: Engine, new_org: Callable[[], uuid.UUID], send: Send
) -> None:
    org = new_org()
    customer, sub_id = se.new_id("cus"), se.new_id("sub")
    sub = se.subscription(
        sub_id, customer, "trialing", metadata={"organization_id": str(org)}, trial_end=T0 + 100
    )
    assert send(se.event("customer.subscription.created", sub, created=T0)).outcome is Outcome.APPLIED
    row = org_row(engine, org)
    assert (row.stripe_customer_id, row.subscription_status) == (customer, "trialing")
    # Later events without metadata find the organization by the customer it learned.
    failed = se.event("invoice.payment_failed", se.invoice(customer, sub_id, status="open"), created=T0 + 100)
    assert send(failed).outcome is Outcome.APPLIED
    assert org_row(engine, org).subscription_status == "past_due"


def test_unknown_customer_is_recorded_and_attached_nowhere(
    engine: Engine, owner_engine: Engine, new_org: Callable[[], uuid.UUID], send: Send
) -> None:
    bystander = new_org()
    before = org_row(engine, bystander)
    evt = se.event(
        "customer.subscription.updated",
        se.subscription(se.new_id("sub"), se.new_id("cus"), "active"),
        created=T0,
    )
    assert send(evt).outcome is Outcome.UNKNOWN_CUSTOMER
    assert send(evt).outcome is Outcome.DUPLICATE
    row = webhook_row(owner_engine, evt["id"])
    assert (row.organization_id, row.outcome, row.event_type) == (
        None,
        "unknown_customer",
        "customer.subscription.updated",
    )
    assert row.payload == evt
    assert org_row(engine, bystander) == before
    # a stranger's organization id in metadata routes nowhere either
    ghost = se.event(
        "customer.subscription.updated",
        se.subscription(
            se.new_id("sub"), se.new_id("cus"), "active", metadata={"organization_id": str(uuid.uuid4())}
        ),
    )
    assert send(ghost).outcome is Outcome.UNKNOWN_CUSTOMER


def test_unhandled_type_is_acknowledged_and_recorded(owner_engine: Engine, send: Send) -> None:
    evt = se.event(
        "customer.updated", {"id": se.new_id("cus"), "object": "customer", "email": "a@example.com"}
    )
    assert send(evt).outcome is Outcome.UNHANDLED
    assert send(evt).outcome is Outcome.DUPLICATE
    row = webhook_row(owner_engine, evt["id"])
    assert (row.outcome, row.organization_id, row.processed_at is not None) == ("unhandled", None, True)


def test_a_customer_owned_by_another_organization_is_not_stolen(
    engine: Engine, new_org: Callable[[], uuid.UUID], send: Send
) -> None:
    owner, other = new_org(), new_org()
    customer, _ = linked(send, owner)
    grab = se.checkout_session(customer, se.new_id("sub"), client_reference_id=str(other))
    assert (
        send(se.event("checkout.session.completed", grab, created=T0 + 10)).outcome
        is Outcome.CUSTOMER_CONFLICT
    )
    assert org_row(engine, other).stripe_customer_id is None
    assert org_row(engine, owner).stripe_customer_id == customer


class FakeStripe:
    """Stripe's API, as far as the SubscriptionSource port asks it."""

    def __init__(self, subscriptions: Mapping[str, Mapping[str, Any]]) -> None:
        self.subscriptions = dict(subscriptions)
        self.asked: list[str] = []

    def fetch_subscription(self, subscription_id: str) -> Mapping[str, Any] | None:
        self.asked.append(subscription_id)
        return self.subscriptions.get(subscription_id)


def test_with_an_api_key_the_subscription_is_fetched_instead_of_inferred(
    engine: Engine, new_org: Callable[[], uuid.UUID], send: Send
) -> None:
    org = new_org()
    customer, sub_id = se.new_id("cus"), se.new_id("sub")
    stripe = FakeStripe(
        {
            sub_id: se.subscription(
                sub_id, customer, "trialing", lookup_key="starter_monthly", trial_end=T0 + 99
            )
        }
    )
    checkout = se.checkout_session(customer, sub_id, client_reference_id=str(org))
    assert (
        send(se.event("checkout.session.completed", checkout, created=T0), stripe).outcome is Outcome.APPLIED
    )
    row = org_row(engine, org)
    assert (row.subscription_status, row.plan, row.trial_end) == ("trialing", "starter", at(T0 + 99))
    # A $0 invoice says nothing about status; Stripe's answer does.
    stripe.subscriptions[sub_id] = se.subscription(sub_id, customer, "active", lookup_key="pro_monthly")
    zero = se.event("invoice.paid", se.invoice(customer, sub_id, amount=0), created=T0 + 5)
    assert send(zero, stripe).outcome is Outcome.APPLIED
    assert (org_row(engine, org).subscription_status, org_row(engine, org).plan) == ("active", "pro")
    assert stripe.asked == [sub_id, sub_id]
    assert store_events(engine, org)[-1]["state_from"] == "stripe_api"


def test_usage_is_counted_per_month_and_the_quota_refuses(
    engine: Engine, new_org: Callable[[], uuid.UUID]
) -> None:
    org = new_org()  # no subscription: the free plan, 1,000 messages a month
    november, december = datetime(2026, 11, 30, 23, 59, tzinfo=UTC), datetime(2026, 12, 1, 0, 1, tzinfo=UTC)
    with UnitOfWork(engine, organization_id=org) as uow:
        assert repo.count_usage(uow.conn, org, repo.MESSAGES_METRIC, 990, at=november) == 990
        assert repo.reserve_sends(uow.conn, org, 10, at=november).allowed
        refused = repo.reserve_sends(uow.conn, org, 1, at=november)
        assert refused.code is RefusalCode.QUOTA_EXCEEDED
        assert repo.usage_of(uow.conn, org, at=november) == 1000
        assert repo.check_send_allowed(uow.conn, org, at=december).allowed
        assert (
            repo.check_send_allowed(uow.conn, org, bulk=True, at=december).code
            is RefusalCode.BULK_NOT_ALLOWED
        )
        uow.commit()


def test_the_plan_catalog_is_read_only_for_the_application(engine: Engine) -> None:
    import sqlalchemy as sa

    with UnitOfWork(engine, organization_id=uuid.uuid4()) as uow:
        catalog = repo.load_catalog(uow.conn)
        assert catalog.plan_for_lookup_keys(["pro_monthly"]) == "pro"
        assert catalog.get("enterprise").monthly_message_quota is None
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            uow.conn.execute(sa.text("UPDATE plans SET monthly_message_quota = NULL"))
