"""Meta WhatsApp Cloud API webhook deliveries, built from the documented payload formats.

`delivery(change(...), change(...))` makes the POST body; the message builders return the objects
Meta puts in `value.messages` and `value.statuses`. `encode` gives the exact bytes with Meta's
\\uXXXX escaping of non-ASCII text, and `sign` the X-Hub-Signature-256 header for them.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import time
from base64 import b64encode
from typing import Any

_counter = itertools.count(1)
_run = os.urandom(4).hex()


def wamid() -> str:
    raw = f"{_run}-{next(_counter)}-{os.urandom(6).hex()}".encode()
    return "wamid." + b64encode(raw).decode()


def sha256_base64(content: bytes) -> str:
    """A media checksum as Meta writes it in webhooks: base64 of the SHA-256 digest."""
    return b64encode(hashlib.sha256(content).digest()).decode()


def now() -> str:
    return str(int(time.time()))


def _base(sender: str, type_: str, ts: str | None, id_: str | None, **extra: Any) -> dict[str, Any]:
    return {"from": sender, "id": id_ or wamid(), "timestamp": ts or now(), "type": type_, **extra}


def text(
    sender: str,
    body: str,
    *,
    id_: str | None = None,
    ts: str | None = None,
    context: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    message = _base(sender, "text", ts, id_, text={"body": body}, **extra)
    if context:
        message["context"] = {"from": "15550783881", "id": context}
    return message


def media(
    sender: str,
    kind: str,
    media_id: str,
    *,
    caption: str | None = None,
    filename: str | None = None,
    sha256: str | None = None,
    content: bytes | None = None,
    mime_type: str = "image/jpeg",
    id_: str | None = None,
    ts: str | None = None,
) -> dict[str, Any]:
    """A media message; `content` gives it the checksum Meta would send for those bytes."""
    body: dict[str, Any] = {"mime_type": mime_type, "id": media_id}
    if sha256 is None and content is not None:
        sha256 = sha256_base64(content)
    if sha256 is not None:
        body["sha256"] = sha256
    if caption is not None:
        body["caption"] = caption
    if filename is not None:
        body["filename"] = filename
    if kind == "audio":
        body["voice"] = True
    if kind == "sticker":
        body["animated"] = False
    return _base(sender, kind, ts, id_, **{kind: body})


def reaction(
    sender: str, target: str, emoji: str | None, *, id_: str | None = None, ts: str | None = None
) -> dict[str, Any]:
    body = {"message_id": target}
    if emoji is not None:
        body["emoji"] = emoji
    return _base(sender, "reaction", ts, id_, reaction=body)


def location(sender: str, *, id_: str | None = None) -> dict[str, Any]:
    return _base(
        sender,
        "location",
        None,
        id_,
        location={
            "latitude": 37.48357,
            "longitude": -122.14829,
            "name": "Philz Coffee",
            "address": "101 Forest Ave, Palo Alto, CA 94301",
            "url": "https://philzcoffee.com",
        },
    )


def contacts_card(sender: str, *, id_: str | None = None) -> dict[str, Any]:
    return _base(
        sender,
        "contacts",
        None,
        id_,
        contacts=[
            {
                "name": {
                    "formatted_name": "Barbara J. Johnson",
                    "first_name": "Barbara",
                    "last_name": "Johnson",
                },
                "phones": [{"phone": "+1 (940) 555-1234", "type": "HOME", "wa_id": "19405551234"}],
                "emails": [{"email": "bjohnson@example.com", "type": "WORK"}],
            }
        ],
    )


def button_reply(
    sender: str, title: str, *, id_: str | None = None, context: str | None = None
) -> dict[str, Any]:
    m = _base(
        sender,
        "interactive",
        None,
        id_,
        interactive={"type": "button_reply", "button_reply": {"id": "yes-btn", "title": title}},
    )
    m["context"] = {"from": "15550783881", "id": context or wamid()}
    return m


def list_reply(sender: str, title: str, *, id_: str | None = None) -> dict[str, Any]:
    return _base(
        sender,
        "interactive",
        None,
        id_,
        interactive={
            "type": "list_reply",
            "list_reply": {"id": "priority_express", "title": title, "description": "Next Day to 2 Days"},
        },
        context={"from": "15550783881", "id": wamid()},
    )


def nfm_reply(sender: str, *, id_: str | None = None) -> dict[str, Any]:
    return _base(
        sender,
        "interactive",
        None,
        id_,
        interactive={
            "type": "nfm_reply",
            "nfm_reply": {
                "name": "flow",
                "body": "Sent",
                "response_json": '{"flow_token": "AQAAAAACS5FpgQ_cAAAAAD0QI3s.", "rating": "5"}',
            },
        },
        context={"from": "15550783881", "id": wamid()},
    )


def quick_reply_button(sender: str, text_: str, *, id_: str | None = None) -> dict[str, Any]:
    return _base(
        sender,
        "button",
        None,
        id_,
        button={"payload": "STOP_PROMOS", "text": text_},
        context={"from": "15550783881", "id": wamid()},
    )


def order(sender: str, *, id_: str | None = None) -> dict[str, Any]:
    return _base(
        sender,
        "order",
        None,
        id_,
        order={
            "catalog_id": "194836987003835",
            "text": "Please deliver before 6pm",
            "product_items": [
                {"product_retailer_id": "di9ozbzfi4", "quantity": 2, "item_price": 30, "currency": "USD"}
            ],
        },
    )


def system_changed_number(
    sender: str, new_wa_id: str, *, legacy: bool = False, id_: str | None = None
) -> dict[str, Any]:
    if legacy:
        body = {
            "body": f"User A changed from {sender} to {new_wa_id}",
            "new_wa_id": new_wa_id,
            "type": "customer_changed_number",
        }
    else:
        body = {
            "body": f"User A changed from {sender} to {new_wa_id}",
            "wa_id": new_wa_id,
            "type": "user_changed_number",
        }
    return _base(sender, "system", None, id_, system=body)


def request_welcome(sender: str, *, id_: str | None = None) -> dict[str, Any]:
    return _base(sender, "request_welcome", None, id_)


def unsupported(sender: str, *, id_: str | None = None) -> dict[str, Any]:
    return _base(
        sender,
        "unsupported",
        None,
        id_,
        unsupported={"type": "edit"},
        errors=[
            {
                "code": 131051,
                "title": "Message type unknown",
                "message": "Message type unknown",
                "error_data": {"details": "Message type is currently not supported."},
            }
        ],
    )


def with_referral(message: dict[str, Any]) -> dict[str, Any]:
    message["referral"] = {
        "source_url": "https://fb.me/3cr4Wqqkv",
        "source_id": "120226305854810726",
        "source_type": "ad",
        "headline": "Chat with us",
        "body": "Free delivery",
        "media_type": "image",
        "image_url": "https://example.com/ad.jpg",
        "ctwa_clid": "Aff-n8ZTODiE79d22KtAwQKj9e_mIEOOj27vDVwFjN80dp4_0NiNhEgpGo0AHemvuSoifXaytfTzcchptiErTKCqTrJ5nW1h7IHYeYymGb5K5J5iuxWnkq4Q",
    }
    message["context"] = {"forwarded": True, "frequently_forwarded": True}
    return message


def status(
    id_: str,
    status_: str,
    *,
    ts: str | None = None,
    recipient: str = "16505551234",
    error: tuple[int, str] | None = None,
    pricing: bool = True,
) -> dict[str, Any]:
    item: dict[str, Any] = {"id": id_, "status": status_, "timestamp": ts or now(), "recipient_id": recipient}
    if pricing and status_ in ("sent", "delivered", "read"):
        item["conversation"] = {
            "id": "3f6d5d5cf7c7b3b4a5e5c6d7e8f90a1b",
            "expiration_timestamp": "1750000000",
            "origin": {"type": "utility"},
        }
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "utility", "type": "regular"}
    if error is not None:
        code, title = error
        item["errors"] = [
            {
                "code": code,
                "title": title,
                "message": title,
                "error_data": {"details": f"{title} (details)"},
                "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
            }
        ]
    return item


def change(
    phone_number_id: str,
    *,
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    contacts: list[tuple[str, str]] | None = None,
    errors: list[dict[str, Any]] | None = None,
    display: str = "15550783881",
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display, "phone_number_id": phone_number_id},
    }
    if contacts is None and messages:
        senders = dict.fromkeys(m["from"] for m in messages if m.get("type") != "system")
        contacts = [(w, f"Customer {w[-4:]}") for w in senders]
    if contacts:
        value["contacts"] = [{"profile": {"name": name}, "wa_id": wa} for wa, name in contacts]
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    if errors is not None:
        value["errors"] = errors
    return {"value": value, "field": "messages"}


def account_change(field: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"value": value, "field": field}


def template_status_update(template_name: str = "order_update") -> dict[str, Any]:
    return account_change(
        "message_template_status_update",
        {
            "event": "APPROVED",
            "message_template_id": 1234567890,
            "message_template_name": template_name,
            "message_template_language": "en_US",
            "reason": "NONE",
        },
    )


def delivery(*changes: dict[str, Any], waba_id: str = "102290129340398") -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [{"id": waba_id, "changes": list(changes)}]}


def delivery_entries(*entries: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba, "changes": changes} for waba, changes in entries],
    }


def encode(document: dict[str, Any]) -> bytes:
    """As Meta sends it: compact, non-ASCII escaped as \\uXXXX (surrogate pairs beyond the BMP)."""
    return json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode()


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# Text that must come back byte for byte.
TRICKY_TEXTS = [
    "\u202eRTL override\u202c and \u200fمرحبا بالعالم\u200e mixed",
    "family \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 and flag \U0001f1f3\U0001f1f1",
    "combining: e\u0301 a\u0308 n\u0303 (not NFC-normalised), Zalgo h\u0336\u0321e\u0334",
    "'; DROP TABLE messages; -- and ' OR 1=1 --",
    "<script>alert('x')</script> &amp; <b>bold</b>",
    "  leading and trailing spaces, tabs\tand\nnewlines\r\n  ",
    "\\u0041 is not A, and %s %(x)s {0} are not placeholders",
    "x" * 5000,
]
