"""Realistic traffic for a running ingress: signed Meta deliveries, signed Stripe events, API sends.

Used by `adsapp demo`, the fault suite and the soak. Each call returns the HTTP status it got (0
when no answer came), so callers count what the ingress itself acknowledged.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import time
import uuid
from base64 import urlsafe_b64encode
from typing import Any

import httpx
import orjson

_run = os.urandom(4).hex()
_counter = itertools.count(1)


def wamid() -> str:
    raw = f"{_run}-{next(_counter)}-{os.urandom(4).hex()}".encode()
    return "wamid." + urlsafe_b64encode(raw).decode().rstrip("=")


def text_message(sender: str, body: str) -> dict[str, Any]:
    return {
        "from": sender,
        "id": wamid(),
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": body},
    }


def image_message(sender: str, media_id: str) -> dict[str, Any]:
    return {
        "from": sender,
        "id": wamid(),
        "timestamp": str(int(time.time())),
        "type": "image",
        "image": {"mime_type": "image/jpeg", "id": media_id},
    }


def status(target_wamid: str, state: str, recipient: str, at: int) -> dict[str, Any]:
    return {"id": target_wamid, "status": state, "timestamp": str(at), "recipient_id": recipient}


def delivery(
    phone_number_id: str,
    waba_id: str,
    messages: list[dict[str, Any]],
    statuses: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": phone_number_id, "phone_number_id": phone_number_id},
        "contacts": [
            {"profile": {"name": f"Customer {m['from'][-4:]}"}, "wa_id": m["from"]} for m in messages
        ],
        "messages": messages,
    }
    if statuses:
        value["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"field": "messages", "value": value}]}],
    }


def encode(document: dict[str, Any]) -> bytes:
    # Meta escapes non-ASCII; plain ASCII JSON is what it signs.
    return orjson.dumps(document)


def sign_whatsapp(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_stripe(body: bytes, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def subscription_event(organization_id: str, created: int, state: str = "active") -> dict[str, Any]:
    """A `customer.subscription.updated` event (basil shape) naming its organization."""
    sub_id = f"sub_{uuid.uuid4().hex[:14]}"
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": created,
        "type": "customer.subscription.updated",
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {
            "object": {
                "id": sub_id,
                "object": "subscription",
                "customer": f"cus_{organization_id.replace('-', '')[:14]}",
                "status": state,
                "cancel_at_period_end": False,
                "metadata": {"organization_id": organization_id},
                "items": {
                    "object": "list",
                    "data": [
                        {
                            "id": f"si_{sub_id[4:]}",
                            "current_period_start": created,
                            "current_period_end": created + 30 * 24 * 3600,
                            "price": {"id": "price_promonthly", "lookup_key": "pro_monthly"},
                        }
                    ],
                },
            }
        },
    }


# The template the demo and the fault suite broadcast: seeded as approved in the database and at
# the fake Graph API (whose listing the scheduler's template sync follows).
BROADCAST_TEMPLATE: dict[str, Any] = {
    "name": "parcel_notice",
    "language": "en_US",
    "status": "APPROVED",
    "category": "UTILITY",
    "components": [{"type": "BODY", "text": "Hi {{1}}, your parcel is on its way."}],
}


def broadcast(recipients: list[str], phone_number_id: str | None = None) -> dict[str, Any]:
    """A `broadcast` bulk job of BROADCAST_TEMPLATE to these wa_ids."""
    body: dict[str, Any] = {
        "kind": "broadcast",
        "template": {
            "name": BROADCAST_TEMPLATE["name"],
            "language": {"code": BROADCAST_TEMPLATE["language"]},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "{{contact.wa_id}}"}]}],
        },
        "recipients": [{"wa_id": r} for r in recipients],
    }
    if phone_number_id is not None:
        body["phone_number_id"] = phone_number_id
    return body


class IngressClient:
    """Posts to one ingress; every method answers with the HTTP status (0: no answer)."""

    def __init__(self, base_url: str, *, app_secret: str, stripe_secret: str, timeout: float = 5.0) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout)
        self.app_secret = app_secret
        self.stripe_secret = stripe_secret

    def close(self) -> None:
        self.http.close()

    def webhook(self, document: dict[str, Any]) -> int:
        body = encode(document)
        headers = {
            "content-type": "application/json",
            "x-hub-signature-256": sign_whatsapp(body, self.app_secret),
        }
        return self._post("/webhooks/whatsapp", body, headers)

    def stripe(self, event: dict[str, Any]) -> int:
        body = orjson.dumps(event, option=orjson.OPT_INDENT_2)
        headers = {
            "content-type": "application/json",
            "stripe-signature": sign_stripe(body, self.stripe_secret),
        }
        return self._post("/webhooks/stripe", body, headers)

    def send(self, api_key: str, body: dict[str, Any], idempotency_key: str) -> tuple[int, dict[str, Any]]:
        return self.api("POST", "/api/v1/messages", api_key, body, idempotency_key)

    def bulk_job(
        self, api_key: str, body: dict[str, Any], idempotency_key: str
    ) -> tuple[int, dict[str, Any]]:
        return self.api("POST", "/api/v1/bulk-jobs", api_key, body, idempotency_key)

    def api(self, method: str, path: str, api_key: str, body: dict[str, Any] | None = None,
            idempotency_key: str | None = None) -> tuple[int, dict[str, Any]]:  # fmt: skip
        """One call of the public API: its status (0: no answer) and its JSON object ({} if none)."""
        headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}
        if idempotency_key is not None:
            headers["idempotency-key"] = idempotency_key
        content = orjson.dumps(body) if body is not None else None
        try:
            response = self.http.request(method, path, content=content, headers=headers)
        except httpx.HTTPError:
            return 0, {}
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        return response.status_code, payload if isinstance(payload, dict) else {}

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        try:
            return self.http.post(path, content=body, headers=headers).status_code
        except httpx.HTTPError:
            return 0
