"""Meta's WhatsApp Cloud API webhooks, read into typed items. Pure: no I/O, no JSON decoding."""

from domain.whatsapp.model import (
    ChangeError,
    Delivery,
    InboundMessage,
    MediaRef,
    NumberChange,
    ParkReason,
    Profile,
    Reaction,
    StatusUpdate,
    Unparsed,
    WebhookChange,
)
from domain.whatsapp.parse import parse_delivery

__all__ = [
    "ChangeError",
    "Delivery",
    "InboundMessage",
    "MediaRef",
    "NumberChange",
    "ParkReason",
    "Profile",
    "Reaction",
    "StatusUpdate",
    "Unparsed",
    "WebhookChange",
    "parse_delivery",
]
