"""Applying one Stripe event: route it to its organization, deduplicate, decide, record.

Routing, in this order: `metadata.organization_id` (or a checkout's `client_reference_id`), then
the customer id an earlier checkout linked. An event that reaches no organization is recorded as
`unknown_customer`, attached to nobody; when a checkout later links that customer, the events
recorded for it are claimed and applied in the order Stripe created them, so a
`subscription.created` that arrived before its `checkout.session.completed` still ends right.

Tenancy: the organization is not known until the event is read, so the lookups that cross tenants
(customer to organization, recording an event that belongs to nobody, claiming such events) go
through the narrow SECURITY DEFINER functions of migration 0002. Everything else runs in a unit of
work scoped to the one organization the event concerns; a system-wide scope would let a routing
mistake write into another tenant's rows, and row-level security could no longer catch it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy.engine import Connection, Engine

from db.repos import billing as repo
from db.uow import UnitOfWork
from domain.billing.events import (
    CheckoutCompleted,
    Fact,
    InvoiceFact,
    StateFact,
    StripeEvent,
    SubscriptionSnapshot,
    Unhandled,
    interpret,
    parse_event,
    parse_subscription,
)
from domain.billing.plans import PlanCatalog
from domain.billing.ports import SubscriptionSource
from domain.billing.state import BillingState, Decision, Outcome, decide, diff
from domain.errors import InvalidPayload, TransientError

log = logging.getLogger(__name__)

_ROUTING_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Handled:
    event_id: str
    event_type: str
    outcome: Outcome
    organization_id: UUID | None = None
    replayed: tuple[Handled, ...] = ()


def handle_stripe_event(
    engine: Engine,
    body: str | bytes,
    *,
    received_at: datetime | None = None,
    source: SubscriptionSource | None = None,
    on_outcome: Callable[[Handled], None] | None = None,
) -> Handled:
    """Apply one Stripe event at most once. Raises InvalidPayload for a body that is not usable."""
    event = parse_event(body)
    fact = interpret(event)
    handled = _route_and_apply(engine, event, fact, received_at, source)
    if on_outcome is not None:
        for item in (handled, *handled.replayed):
            on_outcome(item)
    return handled


def _route_and_apply(
    engine: Engine,
    event: StripeEvent,
    fact: Fact,
    received_at: datetime | None,
    source: SubscriptionSource | None,
) -> Handled:
    if isinstance(fact, Unhandled):
        with engine.connect() as conn, conn.begin():
            inserted = repo.record_unattached(conn, event, received_at, Outcome.UNHANDLED)
        return Handled(event.id, event.type, Outcome.UNHANDLED if inserted else Outcome.DUPLICATE)
    if fact.organization_ref is not None:
        done = _apply_for(engine, fact.organization_ref, event, fact, received_at, source)
        if done is not None:
            return done
        log.warning(
            "Stripe event names an unknown organization; routing by customer",
            extra={"stripe_event_id": event.id, "organization_ref": str(fact.organization_ref)},
        )
    customer = fact.customer_id
    for _ in range(_ROUTING_ATTEMPTS):
        org = _resolve(engine, customer)
        if org is None:
            done = _record_unattached(engine, event, received_at, Outcome.UNKNOWN_CUSTOMER, customer)
        else:
            done = _apply_for(engine, org, event, fact, received_at, source)
        if done is not None:
            return done
    raise TransientError(f"could not route Stripe event {event.id}: its organization keeps changing")


def _resolve(engine: Engine, customer: str | None) -> UUID | None:
    if customer is None:
        return None
    # No tenant scope: this connection sees no rows, only what the routing function returns.
    with engine.connect() as conn:
        return repo.resolve_customer(conn, customer)


def _record_unattached(
    engine: Engine,
    event: StripeEvent,
    received_at: datetime | None,
    outcome: Outcome,
    customer: str | None,
) -> Handled | None:
    """Record an event no organization owns; None when its customer was linked meanwhile."""
    with engine.connect() as conn, conn.begin():
        if customer is not None:
            repo.lock_customer(conn, customer)
            if repo.resolve_customer(conn, customer) is not None:
                return None
        inserted = repo.record_unattached(conn, event, received_at, outcome)
    return Handled(event.id, event.type, outcome if inserted else Outcome.DUPLICATE)


def _apply_for(
    engine: Engine,
    organization_id: UUID,
    event: StripeEvent,
    fact: StateFact,
    received_at: datetime | None,
    source: SubscriptionSource | None,
) -> Handled | None:
    """Apply within the organization's scope; None when the organization does not exist."""
    with UnitOfWork(engine, organization_id=organization_id) as uow:
        conn = uow.conn
        if fact.customer_id is not None:
            repo.lock_customer(conn, fact.customer_id)
        state = repo.lock_state(conn, organization_id)
        if state is None:
            return None
        row_id = repo.record_event(conn, organization_id, event, received_at)
        if row_id is None:
            return Handled(event.id, event.type, Outcome.DUPLICATE, organization_id)
        catalog = repo.load_catalog(conn)
        applier = _Applier(conn, organization_id, catalog, source)
        new_state, outcome = applier.apply(state, event, fact)
        repo.finish_event(conn, row_id, outcome)
        replayed: list[Handled] = []
        linked = new_state.stripe_customer_id
        if linked is not None and linked != state.stripe_customer_id:
            new_state, replayed = applier.replay_claimed(new_state, linked)
        uow.commit()
    return Handled(event.id, event.type, outcome, organization_id, tuple(replayed))


class _Applier:
    def __init__(
        self,
        conn: Connection,
        organization_id: UUID,
        catalog: PlanCatalog,
        source: SubscriptionSource | None,
    ) -> None:
        self.conn = conn
        self.organization_id = organization_id
        self.catalog = catalog
        self.source = source

    def apply(
        self,
        state: BillingState,
        event: StripeEvent,
        fact: StateFact,
    ) -> tuple[BillingState, Outcome]:
        decision, origin = self._decide(state, event, fact)
        linked = decision.state.stripe_customer_id
        if linked is not None and linked != state.stripe_customer_id:
            owner = repo.resolve_customer(self.conn, linked)
            if owner is not None and owner != self.organization_id:
                log.warning(
                    "Stripe customer already belongs to another organization",
                    extra={"stripe_event_id": event.id, "stripe_customer_id": linked},
                )
                return state, Outcome.CUSTOMER_CONFLICT
        if decision.outcome in (Outcome.APPLIED, Outcome.NO_CHANGE, Outcome.FILLED):
            repo.save_state(self.conn, self.organization_id, decision.state)
        if decision.changed or decision.notes:
            repo.append_event(
                self.conn, self.organization_id, _event_name(fact), _audit(event, decision, origin)
            )
        log.info(
            "Stripe event %s",
            decision.outcome,
            extra={
                "stripe_event_id": event.id,
                "stripe_event_type": event.type,
                "organization_id": str(self.organization_id),
                "changes": sorted(decision.changes),
            },
        )
        return decision.state, decision.outcome

    def replay_claimed(self, state: BillingState, customer: str) -> tuple[BillingState, list[Handled]]:
        """Apply the events recorded for `customer` before it was linked, oldest first."""
        parked = []
        for claimed in repo.claim_unattached(self.conn, customer):
            try:
                event = parse_event(claimed.payload)
                fact = interpret(event)
            except InvalidPayload:
                repo.finish_event(self.conn, claimed.row_id, Outcome.MALFORMED)
                continue
            parked.append((event.created, event.id, claimed.row_id, event, fact))
        replayed: list[Handled] = []
        for _, _, row_id, event, fact in sorted(parked, key=lambda p: (p[0], p[1])):
            if isinstance(fact, Unhandled):
                outcome = Outcome.UNHANDLED
            else:
                state, outcome = self.apply(state, event, fact)
            repo.finish_event(self.conn, row_id, outcome)
            replayed.append(Handled(event.id, event.type, outcome, self.organization_id))
        return state, replayed

    def _decide(
        self,
        state: BillingState,
        event: StripeEvent,
        fact: StateFact,
    ) -> tuple[Decision, str]:
        decision = decide(state, event.created, fact, self.catalog)
        fetched = self._fetch_when_useful(state, event, fact, decision)
        if fetched is None:
            return decision, "event"
        # Stripe's answer is the state now, newer than any event: never stale, but the rules about
        # ended and other subscriptions still hold.
        at = state.billing_event_at
        now = event.created if at is None or event.created > at else at
        base = decision.state if isinstance(fact, CheckoutCompleted) else state
        synced = decide(base, now, fetched, self.catalog)
        notes = decision.notes + synced.notes
        changes = diff(state, synced.state)
        if synced.outcome in (Outcome.APPLIED, Outcome.NO_CHANGE, Outcome.FILLED):
            outcome = Outcome.APPLIED if changes else Outcome.NO_CHANGE
            if decision.outcome is Outcome.NOTED and not changes:
                outcome = Outcome.NOTED
            return Decision(outcome, synced.state, changes, notes), "stripe_api"
        return Decision(synced.outcome, state, {}, notes), "stripe_api"

    def _fetch_when_useful(
        self,
        state: BillingState,
        event: StripeEvent,
        fact: StateFact,
        decision: Decision,
    ) -> SubscriptionSnapshot | None:
        """The subscription from Stripe where the body leaves the state in doubt.

        Invoices and checkouts only hint at the subscription's status, and a subscription event
        refused as a same-second tie may be the newer one after all.
        """
        if self.source is None:
            return None
        if isinstance(fact, CheckoutCompleted):
            wanted = fact.subscription_id if fact.is_subscription else None
        elif isinstance(fact, InvoiceFact):
            wanted = fact.subscription_id
        else:
            tie = state.billing_event_at == event.created
            wanted = (
                fact.subscription_id if tie and decision.outcome in (Outcome.STALE, Outcome.FILLED) else None
            )
        if wanted is None:
            return None
        try:
            found = self.source.fetch_subscription(wanted)
        except TransientError:
            raise
        except Exception:
            # A configuration problem (a revoked key, say) must not stop billing: use the body.
            log.exception("could not fetch subscription %s from Stripe; using the event body", wanted)
            return None
        if found is None:
            return None
        try:
            return parse_subscription(found)
        except InvalidPayload:
            log.warning("Stripe returned an unreadable subscription %s; using the event body", wanted)
            return None


def _event_name(fact: StateFact) -> str:
    if isinstance(fact, SubscriptionSnapshot):
        return "billing.subscription_synced"
    if isinstance(fact, CheckoutCompleted):
        return "billing.checkout_completed"
    return f"billing.invoice_{fact.kind}"


def _audit(event: StripeEvent, decision: Decision, origin: str) -> dict[str, Any]:
    return {
        "stripe_event_id": event.id,
        "stripe_event_type": event.type,
        "stripe_event_created": event.created.isoformat(),
        "outcome": str(decision.outcome),
        "state_from": origin,
        "changes": {k: {"from": _plain(a), "to": _plain(b)} for k, (a, b) in decision.changes.items()},
        "notes": list(decision.notes),
    }


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value
