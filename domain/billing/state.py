"""An organization's subscription state and the rule for applying Stripe facts to it.

Stripe delivers at least once, for days, in no guaranteed order. The ordering rule:

1. `billing_event_at` is the `created` of the newest event whose subscription state was applied.
   A fact from an older event never overwrites anything; it may only fill fields still empty
   (a `subscription.created` that arrives after an `invoice.paid` still brings the price and plan).
2. Events created in the same second are common (checkout creates, updates and pays within one).
   A tie is applied unless it would move the same subscription backwards in its lifecycle
   (incomplete < trialing < active, past_due, unpaid, paused < canceled, incomplete_expired).
3. An ended subscription (`canceled`, `incomplete_expired`) stays ended: no later update about the
   same subscription revives it, whatever its timestamp. A new subscription may replace it.
4. While a subscription is live, the end of another (older) one does not touch the organization.
5. Invoices do not carry the subscription's status; it is inferred from them (paid: back to
   active; failed: past_due), under the same rules, and never out of an ended subscription.
6. `checkout.session.completed` links the customer (and, when none is known yet, the subscription);
   it says nothing about status, so it never moves `billing_event_at`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from domain.billing.events import CheckoutCompleted, Fact, InvoiceFact, SubscriptionSnapshot, Unhandled
from domain.billing.plans import PlanCatalog

TERMINAL_STATUSES: Final = frozenset({"canceled", "incomplete_expired"})
_RANK: Final = {"incomplete": 0, "trialing": 1, "canceled": 3, "incomplete_expired": 3}
_LIVE_RANK: Final = 2  # active, past_due, unpaid, paused and any status Stripe adds later


def status_rank(status: str | None) -> int:
    if status is None:
        return -1
    return _RANK.get(status, _LIVE_RANK)


class Outcome(StrEnum):
    """What became of an event; recorded in `webhook_events.outcome` and counted in metrics."""

    APPLIED = "applied"
    NO_CHANGE = "no_change"  # applied, but the state already said so
    FILLED = "filled"  # older than the state: only filled fields that were still empty
    STALE = "stale"  # older than the state: ignored
    ENDED = "ended"  # an update about a subscription that has ended: ignored
    OTHER_SUBSCRIPTION = "other_subscription"  # about a subscription that is not the organization's
    NOTED = "noted"  # recorded in the event store, no state to change
    IGNORED = "ignored"  # a handled type this service has no use for (e.g. a one-off payment)
    CUSTOMER_CONFLICT = "customer_conflict"  # the customer belongs to another organization
    UNKNOWN_CUSTOMER = "unknown_customer"  # no organization yet: kept for when it is linked
    UNHANDLED = "unhandled"  # an event type this service does not handle
    DUPLICATE = "duplicate"  # seen before (only counted: the first delivery's row stays)
    MALFORMED = "malformed"  # not a usable event (only counted: the message is dead-lettered)


@dataclass(frozen=True, slots=True)
class BillingState:
    plan: str = "free"
    subscription_status: str | None = None
    stripe_customer_id: str | None = None
    stripe_subscription_id: str | None = None
    stripe_price_id: str | None = None
    cancel_at_period_end: bool = False
    trial_end: datetime | None = None
    current_period_end: datetime | None = None
    billing_event_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    state: BillingState
    changes: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def decide(state: BillingState, created: datetime, fact: Fact, catalog: PlanCatalog) -> Decision:
    """The new state after `fact`, stated by an event created at `created`."""
    if isinstance(fact, SubscriptionSnapshot):
        return _snapshot(state, created, fact, catalog)
    if isinstance(fact, CheckoutCompleted):
        return _checkout(state, created, fact)
    if isinstance(fact, InvoiceFact):
        return _invoice(state, created, fact)
    assert isinstance(fact, Unhandled)
    return Decision(Outcome.UNHANDLED, state)


def is_stale(state: BillingState, created: datetime, status: str | None, same_subscription: bool) -> bool:
    at = state.billing_event_at
    if at is None or created > at:
        return False
    if created < at:
        return True
    return same_subscription and status_rank(status) < status_rank(state.subscription_status)


def _snapshot(
    state: BillingState, created: datetime, snap: SubscriptionSnapshot, catalog: PlanCatalog
) -> Decision:
    current = state.stripe_subscription_id
    same = current == snap.subscription_id
    if same and state.subscription_status in TERMINAL_STATUSES and snap.status not in TERMINAL_STATUSES:
        return Decision(Outcome.ENDED, state)
    live = state.subscription_status is not None and state.subscription_status not in TERMINAL_STATUSES
    if current is not None and not same and live and snap.status in TERMINAL_STATUSES:
        return Decision(Outcome.OTHER_SUBSCRIPTION, state)

    notes: list[str] = []
    plan = catalog.plan_for_lookup_keys(snap.lookup_keys)
    if plan is None and snap.price_id is not None:
        notes.append(f"plan_unresolved:{','.join(snap.lookup_keys) or snap.price_id}")
    customer = state.stripe_customer_id or snap.customer_id

    if is_stale(state, created, snap.status, same or current is None):
        if not (same or current is None):
            return Decision(Outcome.STALE, state)
        fill: dict[str, Any] = {}
        if state.subscription_status is None:
            fill["subscription_status"] = snap.status
        if current is None:
            fill["stripe_subscription_id"] = snap.subscription_id
        if state.stripe_price_id is None and snap.price_id is not None:
            fill["stripe_price_id"] = snap.price_id
            if plan is not None:
                fill["plan"] = plan
        if state.trial_end is None and snap.trial_end is not None:
            fill["trial_end"] = snap.trial_end
        if state.current_period_end is None and snap.current_period_end is not None:
            fill["current_period_end"] = snap.current_period_end
        if state.stripe_customer_id is None and customer is not None:
            fill["stripe_customer_id"] = customer
        return _result(state, dataclasses.replace(state, **fill), Outcome.FILLED, Outcome.STALE, notes)

    new = dataclasses.replace(
        state,
        plan=plan or state.plan,
        subscription_status=snap.status,
        stripe_customer_id=customer,
        stripe_subscription_id=snap.subscription_id,
        stripe_price_id=snap.price_id or state.stripe_price_id,
        cancel_at_period_end=snap.cancel_at_period_end,
        trial_end=snap.trial_end,
        current_period_end=snap.current_period_end or (state.current_period_end if same else None),
        billing_event_at=_latest(state.billing_event_at, created),
    )
    return _result(state, new, Outcome.APPLIED, Outcome.NO_CHANGE, notes)


def _checkout(state: BillingState, created: datetime, checkout: CheckoutCompleted) -> Decision:
    if not checkout.is_subscription:
        return Decision(Outcome.IGNORED, state)
    new = state
    # An older checkout must not take the organization back to a customer it has moved from.
    if (
        checkout.customer_id is not None
        and checkout.customer_id != state.stripe_customer_id
        and (state.stripe_customer_id is None or not is_stale(state, created, None, False))
    ):
        new = dataclasses.replace(new, stripe_customer_id=checkout.customer_id)
    if state.stripe_subscription_id is None and checkout.subscription_id is not None:
        new = dataclasses.replace(new, stripe_subscription_id=checkout.subscription_id)
    return _result(state, new, Outcome.APPLIED, Outcome.NO_CHANGE, [])


def _invoice(state: BillingState, created: datetime, invoice: InvoiceFact) -> Decision:
    if invoice.kind == "payment_action_required":
        return Decision(Outcome.NOTED, state, notes=("payment_action_required",))
    current, status = state.stripe_subscription_id, state.subscription_status
    ended = status in TERMINAL_STATUSES
    same = invoice.subscription_id is None or current is None or invoice.subscription_id == current
    if not same and not ended:
        return Decision(Outcome.OTHER_SUBSCRIPTION, state)
    # An ended subscription's final invoice may still be paid or fail: that changes nothing.
    fresh = status is None or (ended and not same)

    new_status = status
    if invoice.kind == "paid":
        if (status in ("past_due", "unpaid", "incomplete") and not fresh) or (
            (status == "trialing" or fresh) and invoice.amount_paid > 0
        ):
            new_status = "active"
    elif invoice.kind == "payment_failed":
        if status in ("active", "trialing"):
            new_status = "past_due"
        elif fresh and invoice.billing_reason == "subscription_create":
            new_status = "incomplete"

    if new_status != status and is_stale(state, created, new_status, True):
        return Decision(Outcome.STALE, state)
    if new_status == status and state.billing_event_at is not None and created < state.billing_event_at:
        return Decision(Outcome.STALE, state)

    new = state
    if new_status != status:
        new = dataclasses.replace(
            new,
            subscription_status=new_status,
            billing_event_at=_latest(state.billing_event_at, created),
        )
        if invoice.subscription_id is not None and (current is None or not same):
            new = dataclasses.replace(new, stripe_subscription_id=invoice.subscription_id)
    if (
        invoice.kind == "paid"
        and invoice.period_end is not None
        and new.subscription_status not in TERMINAL_STATUSES
        and (new.current_period_end is None or invoice.period_end > new.current_period_end)
    ):
        new = dataclasses.replace(new, current_period_end=invoice.period_end)
    notes = ["payment_failed"] if invoice.kind == "payment_failed" else []
    return _result(state, new, Outcome.APPLIED, Outcome.NO_CHANGE, notes)


def diff(old: BillingState, new: BillingState) -> dict[str, tuple[Any, Any]]:
    changes: dict[str, tuple[Any, Any]] = {}
    for f in dataclasses.fields(BillingState):
        if f.name == "billing_event_at":
            continue
        before, after = getattr(old, f.name), getattr(new, f.name)
        if before != after:
            changes[f.name] = (before, after)
    return changes


def _result(
    old: BillingState, new: BillingState, if_changed: Outcome, otherwise: Outcome, notes: list[str]
) -> Decision:
    changes = diff(old, new)
    return Decision(if_changed if changes else otherwise, new, changes, tuple(notes))


def _latest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a
