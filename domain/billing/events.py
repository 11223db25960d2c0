"""Stripe events read into typed facts, for the API versions before and after 2025-03-31 "basil".

What moved in basil, and is read from both places here:
- billing periods: `subscription.current_period_end` became `subscription.items.data[].current_period_end`;
- the invoice's subscription: `invoice.subscription` became
  `invoice.parent.subscription_details.subscription` (its metadata snapshot likewise, from
  `invoice.subscription_details.metadata`);
- invoice lines: `line.price` became `line.pricing.price_details.price` (an id only).

Only the fields the rules need are read; the whole event is kept in `webhook_events.payload`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from domain.errors import InvalidPayload

SUBSCRIPTION_EVENTS: Final = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
        "customer.subscription.trial_will_end",
    }
)
INVOICE_PAID_EVENTS: Final = frozenset({"invoice.paid", "invoice.payment_succeeded"})
INVOICE_FAILED_EVENTS: Final = frozenset({"invoice.payment_failed"})
INVOICE_ACTION_EVENTS: Final = frozenset({"invoice.payment_action_required"})
CHECKOUT_EVENTS: Final = frozenset({"checkout.session.completed"})
INVOICE_EVENTS: Final = INVOICE_PAID_EVENTS | INVOICE_FAILED_EVENTS | INVOICE_ACTION_EVENTS
HANDLED_EVENTS: Final = SUBSCRIPTION_EVENTS | INVOICE_EVENTS | CHECKOUT_EVENTS

ORGANIZATION_METADATA_KEY: Final = "organization_id"


@dataclass(frozen=True, slots=True)
class StripeEvent:
    id: str
    type: str
    created: datetime
    object: Mapping[str, Any]
    api_version: str | None
    raw: Mapping[str, Any]

    @property
    def customer_id(self) -> str | None:
        return _id_of(self.object.get("customer"))


@dataclass(frozen=True, slots=True)
class SubscriptionSnapshot:
    """The whole subscription as an event (or a fetch from Stripe) shows it."""

    subscription_id: str
    customer_id: str | None
    status: str
    price_id: str | None
    lookup_keys: tuple[str, ...]
    cancel_at_period_end: bool
    trial_end: datetime | None
    current_period_end: datetime | None
    organization_ref: UUID | None
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class CheckoutCompleted:
    session_id: str
    customer_id: str | None
    subscription_id: str | None
    organization_ref: UUID | None
    is_subscription: bool


@dataclass(frozen=True, slots=True)
class InvoiceFact:
    """What an invoice says about its subscription: less than a snapshot, so it is inferred from."""

    kind: str  # "paid" | "payment_failed" | "payment_action_required"
    invoice_id: str
    customer_id: str | None
    subscription_id: str | None
    amount_paid: int
    amount_due: int
    billing_reason: str | None
    period_end: datetime | None
    organization_ref: UUID | None


@dataclass(frozen=True, slots=True)
class Unhandled:
    event_type: str


StateFact = SubscriptionSnapshot | CheckoutCompleted | InvoiceFact  # facts about one organization
Fact = StateFact | Unhandled


def parse_event(body: str | bytes | Mapping[str, Any]) -> StripeEvent:
    """The event envelope; raises InvalidPayload when it is not a Stripe event."""
    if isinstance(body, str | bytes):
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise InvalidPayload(f"not JSON: {exc}") from exc
    else:
        document = body
    if not isinstance(document, Mapping) or document.get("object") != "event":
        raise InvalidPayload("not a Stripe event object")
    event_id, event_type, created = document.get("id"), document.get("type"), document.get("created")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str) or not event_type:
        raise InvalidPayload("event id or type missing")
    if not isinstance(created, int) or isinstance(created, bool):
        raise InvalidPayload(f"event {event_id}: created is not a unix timestamp")
    data = document.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        raise InvalidPayload(f"event {event_id}: data.object missing")
    api_version = document.get("api_version")
    return StripeEvent(
        id=event_id,
        type=event_type,
        created=_time(created),
        object=obj,
        api_version=api_version if isinstance(api_version, str) else None,
        raw=document,
    )


def interpret(event: StripeEvent) -> Fact:
    """The fact an event states; raises InvalidPayload when a handled type lacks what it needs."""
    obj = event.object
    if event.type in SUBSCRIPTION_EVENTS:
        return parse_subscription(obj, deleted=event.type == "customer.subscription.deleted")
    if event.type in CHECKOUT_EVENTS:
        session_id = _require_str(obj, "id", event.id)
        metadata = _mapping(obj.get("metadata"))
        ref = _uuid(metadata.get(ORGANIZATION_METADATA_KEY)) or _uuid(obj.get("client_reference_id"))
        return CheckoutCompleted(
            session_id=session_id,
            customer_id=_id_of(obj.get("customer")),
            subscription_id=_id_of(obj.get("subscription")),
            organization_ref=ref,
            is_subscription=obj.get("mode") == "subscription",
        )
    if event.type in INVOICE_EVENTS:
        if event.type in INVOICE_PAID_EVENTS:
            kind = "paid"
        elif event.type in INVOICE_FAILED_EVENTS:
            kind = "payment_failed"
        else:
            kind = "payment_action_required"
        return parse_invoice(obj, kind, event.id)
    return Unhandled(event.type)


def parse_subscription(obj: Mapping[str, Any], *, deleted: bool = False) -> SubscriptionSnapshot:
    subscription_id = _require_str(obj, "id", "subscription")
    status = obj.get("status")
    if not isinstance(status, str) or not status:
        raise InvalidPayload(f"subscription {subscription_id}: status missing")
    if deleted and status not in ("canceled", "incomplete_expired"):
        status = "canceled"  # a deleted subscription has ended whatever the body says
    items = _items(obj)
    period_ends = [_opt_time(item.get("current_period_end")) for item in items]
    # basil and later: per item; before: on the subscription itself.
    period_end = max((p for p in period_ends if p is not None), default=None) or _opt_time(
        obj.get("current_period_end")
    )
    prices = [_mapping(item.get("price")) or _mapping(item.get("plan")) for item in items]
    if not prices and isinstance(obj.get("plan"), Mapping):
        prices = [_mapping(obj.get("plan"))]
    lookup_keys = tuple(p["lookup_key"] for p in prices if isinstance(p.get("lookup_key"), str))
    price_id = next((p["id"] for p in prices if isinstance(p.get("id"), str)), None)
    return SubscriptionSnapshot(
        subscription_id=subscription_id,
        customer_id=_id_of(obj.get("customer")),
        status=status,
        price_id=price_id,
        lookup_keys=lookup_keys,
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
        trial_end=_opt_time(obj.get("trial_end")),
        current_period_end=period_end,
        organization_ref=_uuid(_mapping(obj.get("metadata")).get(ORGANIZATION_METADATA_KEY)),
        deleted=deleted,
    )


def parse_invoice(obj: Mapping[str, Any], kind: str, event_id: str = "invoice") -> InvoiceFact:
    invoice_id = _require_str(obj, "id", event_id)
    parent = _mapping(obj.get("parent"))
    details = _mapping(parent.get("subscription_details"))
    if details:  # basil and later
        subscription_id = _id_of(details.get("subscription"))
        metadata = _mapping(details.get("metadata"))
    else:
        subscription_id = _id_of(obj.get("subscription"))
        metadata = _mapping(_mapping(obj.get("subscription_details")).get("metadata"))
    lines = _mapping(obj.get("lines")).get("data")
    line_ends: list[datetime] = []
    for line in lines if isinstance(lines, list) else []:
        if not isinstance(line, Mapping):
            continue
        end = _opt_time(_mapping(line.get("period")).get("end"))
        if end is not None:
            line_ends.append(end)
        if subscription_id is None:
            line_parent = _mapping(_mapping(line.get("parent")).get("subscription_item_details"))
            subscription_id = _id_of(line_parent.get("subscription")) or _id_of(line.get("subscription"))
    return InvoiceFact(
        kind=kind,
        invoice_id=invoice_id,
        customer_id=_id_of(obj.get("customer")),
        subscription_id=subscription_id,
        amount_paid=_int(obj.get("amount_paid")),
        amount_due=_int(obj.get("amount_due")),
        billing_reason=obj.get("billing_reason") if isinstance(obj.get("billing_reason"), str) else None,
        period_end=max(line_ends, default=None),
        organization_ref=_uuid(metadata.get(ORGANIZATION_METADATA_KEY)),
    )


def _items(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    data = _mapping(obj.get("items")).get("data")
    return [item for item in data if isinstance(item, Mapping)] if isinstance(data, list) else []


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _id_of(value: object) -> str | None:
    """An id, whether the field holds it or an expanded object."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def _require_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidPayload(f"{where}: {key} missing")
    return value


def _uuid(value: object) -> UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _time(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _opt_time(value: object) -> datetime | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return _time(value)
    return None
