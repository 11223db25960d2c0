from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from domain.billing.events import (
    CheckoutCompleted,
    InvoiceFact,
    SubscriptionSnapshot,
    Unhandled,
    interpret,
    parse_event,
)
from domain.errors import InvalidPayload
from tests.support import stripe_events as se


def ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@pytest.mark.parametrize("shape", ["basil", "legacy"])
def test_subscription_reads_period_and_price_from_either_shape(shape: se.Shape) -> None:
    org = str(uuid.uuid4())
    sub = se.subscription(
        "sub_1",
        "cus_1",
        "trialing",
        shape=shape,
        trial_end=se.BASE_TIME + 100,
        metadata={"organization_id": org},
    )
    fact = interpret(parse_event(se.body_of(se.event("customer.subscription.created", sub, shape=shape))))
    assert fact == SubscriptionSnapshot(
        subscription_id="sub_1",
        customer_id="cus_1",
        status="trialing",
        price_id="price_promonthly",
        lookup_keys=("pro_monthly",),
        cancel_at_period_end=False,
        trial_end=ts(se.BASE_TIME + 100),
        current_period_end=ts(se.BASE_TIME + se.MONTH),
        organization_ref=uuid.UUID(org),
    )


@pytest.mark.parametrize("shape", ["basil", "legacy"])
def test_invoice_finds_its_subscription_in_either_shape(shape: se.Shape) -> None:
    org = str(uuid.uuid4())
    inv = se.invoice(
        "cus_1", "sub_1", shape=shape, metadata={"organization_id": org}, period_end=se.BASE_TIME + 5
    )
    fact = interpret(parse_event(se.event("invoice.paid", inv, shape=shape)))
    assert isinstance(fact, InvoiceFact)
    assert (fact.kind, fact.subscription_id, fact.customer_id) == ("paid", "sub_1", "cus_1")
    assert fact.organization_ref == uuid.UUID(org)
    assert fact.period_end == ts(se.BASE_TIME + 5)
    assert fact.amount_paid == 4900


def test_basil_invoice_without_parent_details_falls_back_to_its_lines() -> None:
    inv = se.invoice("cus_1", "sub_9")
    inv["parent"] = None
    fact = interpret(parse_event(se.event("invoice.payment_failed", inv)))
    assert isinstance(fact, InvoiceFact)
    assert (fact.kind, fact.subscription_id) == ("payment_failed", "sub_9")


def test_deleted_subscription_is_canceled_whatever_the_body_says() -> None:
    sub = se.subscription("sub_1", "cus_1", "active")
    fact = interpret(parse_event(se.event("customer.subscription.deleted", sub)))
    assert isinstance(fact, SubscriptionSnapshot)
    assert fact.status == "canceled" and fact.deleted


def test_checkout_links_by_client_reference_or_metadata() -> None:
    org = uuid.uuid4()
    by_ref = interpret(
        parse_event(
            se.event(
                "checkout.session.completed",
                se.checkout_session("cus_1", "sub_1", client_reference_id=str(org)),
            )
        )
    )
    by_meta = interpret(
        parse_event(
            se.event(
                "checkout.session.completed",
                se.checkout_session("cus_1", None, metadata={"organization_id": str(org)}, mode="payment"),
            )
        )
    )
    assert by_ref == CheckoutCompleted(by_ref.session_id, "cus_1", "sub_1", org, True)  # type: ignore[union-attr]
    assert (
        isinstance(by_meta, CheckoutCompleted)
        and by_meta.organization_ref == org
        and not by_meta.is_subscription
    )


def test_unhandled_types_and_junk_references() -> None:
    assert interpret(
        parse_event(se.event("customer.created", {"id": "cus_1", "object": "customer"}))
    ) == Unhandled("customer.created")
    sub = se.subscription("sub_1", "cus_1", "active", metadata={"organization_id": "not-a-uuid"})
    fact = interpret(parse_event(se.event("customer.subscription.updated", sub)))
    assert isinstance(fact, SubscriptionSnapshot) and fact.organization_ref is None


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        json.dumps({"object": "event", "id": "evt_1", "type": "x"}),
        json.dumps(
            {"object": "event", "id": "evt_1", "type": "x", "created": "yesterday", "data": {"object": {}}}
        ),
        json.dumps({"object": "event", "id": "", "type": "x", "created": 1, "data": {"object": {}}}),
        json.dumps({"object": "charge", "id": "ch_1"}),
    ],
)
def test_malformed_envelopes_are_invalid_payload(body: str) -> None:
    with pytest.raises(InvalidPayload):
        parse_event(body)


def test_handled_type_without_its_fields_is_invalid_payload() -> None:
    evt = se.event("customer.subscription.updated", {"object": "subscription", "id": "sub_1"})
    with pytest.raises(InvalidPayload):
        interpret(parse_event(evt))
