"""Realistic Stripe event bodies, in the shapes of API versions before and after 2025-03-31 "basil".

basil moved billing periods onto subscription items and linked invoices to their subscription
through `parent.subscription_details` (and invoice lines through `parent.subscription_item_details`,
with `pricing.price_details.price` in place of `price`).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from typing import Any, Literal

Shape = Literal["basil", "legacy"]
API_VERSIONS: dict[str, str] = {"basil": "2025-03-31.basil", "legacy": "2024-06-20"}
BASE_TIME = 1_764_000_000  # late November 2025
MONTH = 30 * 24 * 3600

_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:14]}{next(_ids)}"


def price(lookup_key: str | None = "pro_monthly", price_id: str | None = None) -> dict[str, Any]:
    return {
        "id": price_id or f"price_{(lookup_key or 'x').replace('_', '')}",
        "object": "price",
        "active": True,
        "currency": "eur",
        "lookup_key": lookup_key,
        "product": "prod_Adsapp",
        "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
        "type": "recurring",
        "unit_amount": 4900,
    }


def subscription(
    sub_id: str,
    customer: str,
    status: str,
    *,
    shape: Shape = "basil",
    lookup_key: str | None = "pro_monthly",
    price_id: str | None = None,
    period_start: int = BASE_TIME,
    period_end: int = BASE_TIME + MONTH,
    trial_end: int | None = None,
    cancel_at_period_end: bool = False,
    metadata: dict[str, str] | None = None,
    canceled_at: int | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": f"si_{sub_id[4:]}",
        "object": "subscription_item",
        "created": period_start,
        "price": price(lookup_key, price_id),
        "quantity": 1,
        "subscription": sub_id,
    }
    body: dict[str, Any] = {
        "id": sub_id,
        "object": "subscription",
        "billing_cycle_anchor": period_start,
        "cancel_at": period_end if cancel_at_period_end else None,
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": canceled_at,
        "collection_method": "charge_automatically",
        "created": period_start,
        "currency": "eur",
        "customer": customer,
        "ended_at": canceled_at if status == "canceled" else None,
        "items": {"object": "list", "data": [item], "has_more": False},
        "latest_invoice": None,
        "livemode": False,
        "metadata": metadata or {},
        "start_date": period_start,
        "status": status,
        "trial_end": trial_end,
        "trial_start": period_start if trial_end else None,
    }
    if shape == "basil":
        item["current_period_start"] = period_start
        item["current_period_end"] = period_end
    else:
        body["current_period_start"] = period_start
        body["current_period_end"] = period_end
        body["plan"] = {"id": item["price"]["id"], "object": "plan", "interval": "month"}
        item["plan"] = body["plan"]
    return body


def invoice(
    customer: str,
    sub_id: str | None,
    *,
    shape: Shape = "basil",
    status: str = "paid",
    amount: int = 4900,
    billing_reason: str = "subscription_cycle",
    period_start: int = BASE_TIME,
    period_end: int = BASE_TIME + MONTH,
    metadata: dict[str, str] | None = None,
    lookup_key: str = "pro_monthly",
) -> dict[str, Any]:
    inv_id = new_id("in")
    paid = status == "paid"
    line: dict[str, Any] = {
        "id": new_id("il"),
        "object": "line_item",
        "amount": amount,
        "currency": "eur",
        "period": {"start": period_start, "end": period_end},
        "quantity": 1,
    }
    body: dict[str, Any] = {
        "id": inv_id,
        "object": "invoice",
        "amount_due": amount,
        "amount_paid": amount if paid else 0,
        "amount_remaining": 0 if paid else amount,
        "attempt_count": 1,
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
        "currency": "eur",
        "customer": customer,
        "lines": {"object": "list", "data": [line], "has_more": False},
        "livemode": False,
        "period_start": period_start,
        "period_end": period_start,
        "status": status,
    }
    if shape == "basil":
        body["parent"] = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": metadata or {}, "subscription": sub_id},
        }
        line["parent"] = {
            "type": "subscription_item_details",
            "subscription_item_details": {
                "subscription": sub_id,
                "subscription_item": "si_x",
                "proration": False,
            },
        }
        line["pricing"] = {
            "type": "price_details",
            "price_details": {"price": f"price_{lookup_key}", "product": "prod_Adsapp"},
        }
    else:
        body["subscription"] = sub_id
        body["subscription_details"] = {"metadata": metadata or {}}
        line["subscription"] = sub_id
        line["type"] = "subscription"
        line["price"] = price(lookup_key)
    return body


def checkout_session(
    customer: str,
    sub_id: str | None,
    *,
    client_reference_id: str | None = None,
    metadata: dict[str, str] | None = None,
    mode: str = "subscription",
) -> dict[str, Any]:
    return {
        "id": new_id("cs_test"),
        "object": "checkout.session",
        "client_reference_id": client_reference_id,
        "customer": customer,
        "metadata": metadata or {},
        "mode": mode,
        "payment_status": "paid",
        "status": "complete",
        "subscription": sub_id,
        "livemode": False,
    }


def event(
    event_type: str,
    obj: dict[str, Any],
    *,
    created: int = BASE_TIME,
    shape: Shape = "basil",
    event_id: str | None = None,
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id or new_id("evt"),
        "object": "event",
        "api_version": API_VERSIONS[shape],
        "created": created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def body_of(evt: dict[str, Any]) -> str:
    """The bytes Stripe would send: pretty-printed JSON, as its webhooks are."""
    return json.dumps(evt, indent=2)


def stripe_signature(body: str | bytes, secret: str, timestamp: int | None = None) -> str:
    """`Stripe-Signature` as Stripe computes it: v1 = HMAC-SHA256(secret, "{t}.{body}")."""
    t = int(time.time()) if timestamp is None else timestamp
    raw = body.encode() if isinstance(body, str) else body
    mac = hmac.new(secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"
