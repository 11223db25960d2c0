"""The ordering rule and the inferences, on plain values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from domain.billing.events import CheckoutCompleted, Fact, interpret, parse_event
from domain.billing.plans import Plan, PlanCatalog
from domain.billing.state import BillingState, Outcome, decide
from tests.support import stripe_events as se

CATALOG = PlanCatalog(
    {
        "free": Plan("free", 1000, False),
        "starter": Plan("starter", 10_000, False),
        "pro": Plan("pro", 100_000, True),
    },
    {"starter_monthly": "starter", "pro_monthly": "pro"},
)
T0 = se.BASE_TIME


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def fact(event_type: str, obj: dict[str, object]) -> Fact:
    return interpret(parse_event(se.event(event_type, obj)))


def sub(status: str, sub_id: str = "sub_1", **kw: object) -> Fact:
    kind = "customer.subscription.deleted" if status == "canceled" else "customer.subscription.updated"
    return fact(kind, se.subscription(sub_id, "cus_1", status, **kw))  # type: ignore[arg-type]


def inv(kind: str, sub_id: str = "sub_1", **kw: object) -> Fact:
    return fact(kind, se.invoice("cus_1", sub_id, **kw))  # type: ignore[arg-type]


def run(state: BillingState, *steps: tuple[int, Fact]) -> tuple[BillingState, list[Outcome]]:
    outcomes = []
    for created, f in steps:
        d = decide(state, at(created), f, CATALOG)
        state = d.state
        outcomes.append(d.outcome)
    return state, outcomes


def test_trial_then_first_real_payment_is_active() -> None:
    state, outcomes = run(
        BillingState(),
        (T0, sub("trialing", trial_end=T0 + 100)),
        (T0, inv("invoice.paid", amount=0, billing_reason="subscription_create")),
        (T0 + 100, inv("invoice.paid", period_end=T0 + 100 + se.MONTH)),
    )
    assert outcomes == [Outcome.APPLIED, Outcome.NO_CHANGE, Outcome.APPLIED]
    assert state.subscription_status == "active"
    assert state.plan == "pro" and state.stripe_price_id == "price_promonthly"
    assert state.current_period_end == at(T0 + 100 + se.MONTH)
    assert state.billing_event_at == at(T0 + 100)


def test_payment_failure_then_recovery() -> None:
    state, outcomes = run(
        BillingState(),
        (T0, sub("active")),
        (T0 + 10, inv("invoice.payment_failed")),
        (T0 + 20, inv("invoice.paid")),
    )
    assert outcomes == [Outcome.APPLIED, Outcome.APPLIED, Outcome.APPLIED]
    assert state.subscription_status == "active"
    state, outcomes = run(state, (T0 + 30, inv("invoice.payment_failed")))
    assert state.subscription_status == "past_due"


def test_an_older_update_after_a_newer_one_is_ignored() -> None:
    state, outcomes = run(
        BillingState(),
        (T0 + 50, sub("active", lookup_key="pro_monthly")),
        (T0 + 10, sub("past_due", lookup_key="starter_monthly")),
    )
    assert outcomes == [Outcome.APPLIED, Outcome.STALE]
    assert (state.subscription_status, state.plan) == ("active", "pro")


def test_same_second_ties_never_move_a_subscription_backwards() -> None:
    state, outcomes = run(
        BillingState(),
        (T0, sub("active")),
        (T0, fact("customer.subscription.created", se.subscription("sub_1", "cus_1", "incomplete"))),
    )
    assert outcomes == [Outcome.APPLIED, Outcome.STALE]
    assert state.subscription_status == "active"
    state, outcomes = run(BillingState(), (T0, sub("incomplete")), (T0, sub("active")))
    assert state.subscription_status == "active"


def test_a_deleted_subscription_is_not_resurrected_even_by_a_later_timestamp() -> None:
    state, outcomes = run(
        BillingState(),
        (T0, sub("active")),
        (T0 + 10, sub("canceled", canceled_at=T0 + 10)),
        (T0 + 5, sub("active")),
        (T0 + 20, sub("active")),
        (T0 + 30, inv("invoice.paid")),
    )
    assert outcomes == [Outcome.APPLIED, Outcome.APPLIED, Outcome.ENDED, Outcome.ENDED, Outcome.NO_CHANGE]
    assert state.subscription_status == "canceled"


def test_a_new_subscription_replaces_an_ended_one_but_an_old_end_spares_a_live_one() -> None:
    state, outcomes = run(
        BillingState(),
        (T0, sub("canceled", "sub_old")),
        (T0 + 10, sub("active", "sub_new", lookup_key="starter_monthly")),
        (T0 + 20, sub("canceled", "sub_old")),
    )
    assert outcomes == [Outcome.APPLIED, Outcome.APPLIED, Outcome.OTHER_SUBSCRIPTION]
    assert (state.stripe_subscription_id, state.subscription_status, state.plan) == (
        "sub_new",
        "active",
        "starter",
    )


def test_an_older_snapshot_fills_only_what_is_still_empty() -> None:
    state = BillingState(
        stripe_customer_id="cus_1",
        stripe_subscription_id="sub_1",
        subscription_status="active",
        billing_event_at=at(T0 + 60),
    )
    decision = decide(state, at(T0), sub("trialing", trial_end=T0 + 5), CATALOG)
    assert decision.outcome is Outcome.FILLED
    assert decision.state.subscription_status == "active"
    assert (decision.state.plan, decision.state.trial_end) == ("pro", at(T0 + 5))
    assert decision.state.billing_event_at == at(T0 + 60)


def test_checkout_links_but_never_sets_status_or_moves_the_stamp() -> None:
    org = uuid.uuid4()
    checkout = CheckoutCompleted("cs_1", "cus_new", "sub_1", org, True)
    state = BillingState(billing_event_at=at(T0))
    d = decide(state, at(T0 + 100), checkout, CATALOG)
    assert d.outcome is Outcome.APPLIED
    assert (d.state.stripe_customer_id, d.state.stripe_subscription_id) == ("cus_new", "sub_1")
    assert d.state.subscription_status is None and d.state.billing_event_at == at(T0)
    # an older checkout does not take the organization back to a customer it moved from
    moved = BillingState(stripe_customer_id="cus_new", billing_event_at=at(T0 + 200))
    old = decide(moved, at(T0 + 100), CheckoutCompleted("cs_0", "cus_old", "sub_0", org, True), CATALOG)
    assert old.state.stripe_customer_id == "cus_new"
    assert (
        decide(state, at(T0), CheckoutCompleted("cs_2", "cus_1", None, org, False), CATALOG).outcome
        is Outcome.IGNORED
    )


def test_unknown_price_keeps_the_plan_and_says_so() -> None:
    state, _ = run(BillingState(), (T0, sub("active", lookup_key="pro_monthly")))
    d = decide(state, at(T0 + 10), sub("active", lookup_key="gold_monthly", price_id="price_gold"), CATALOG)
    assert d.state.plan == "pro" and d.state.stripe_price_id == "price_gold"
    assert d.notes == ("plan_unresolved:gold_monthly",)


def test_invoice_inference_without_prior_state() -> None:
    paid = decide(BillingState(), at(T0), inv("invoice.paid"), CATALOG)
    assert (paid.state.subscription_status, paid.state.stripe_subscription_id) == ("active", "sub_1")
    trial = decide(BillingState(), at(T0), inv("invoice.paid", amount=0), CATALOG)
    assert trial.outcome is Outcome.NO_CHANGE or trial.state.subscription_status is None
    first_fail = decide(
        BillingState(), at(T0), inv("invoice.payment_failed", billing_reason="subscription_create"), CATALOG
    )
    assert first_fail.state.subscription_status == "incomplete"
    action = decide(BillingState(), at(T0), inv("invoice.payment_action_required"), CATALOG)
    assert action.outcome is Outcome.NOTED and action.notes == ("payment_action_required",)
    other = decide(
        BillingState(stripe_subscription_id="sub_2", subscription_status="active"),
        at(T0),
        inv("invoice.payment_failed"),
        CATALOG,
    )
    assert other.outcome is Outcome.OTHER_SUBSCRIPTION
