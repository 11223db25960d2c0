"""Names shared by the publishers (ingress, outbox) and the consumers (Dramatiq actors).

The ingress writes Dramatiq's message format itself, so queue and actor names are a contract between
two processes and live here, in one place.
"""

from __future__ import annotations

from typing import Final

INBOUND_QUEUE: Final = "inbound"
WHATSAPP_DELIVERY_ACTOR: Final = "process_whatsapp_delivery"

BILLING_QUEUE: Final = "billing"
STRIPE_EVENT_ACTOR: Final = "process_stripe_event"

MEDIA_QUEUE: Final = "media"
FETCH_MEDIA_ACTOR: Final = "fetch_media"

OUTBOUND_QUEUE: Final = "outbound"
SEND_MESSAGE_ACTOR: Final = "send_message"
