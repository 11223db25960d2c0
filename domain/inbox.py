"""The values the inbox stores: message directions, conversation and media states.

Rendered into the inbound SQL from here, so a value is spelled in one place.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

INBOUND: Final = "inbound"
OUTBOUND: Final = "outbound"
# What an inbound message is once stored (outbound ones move through `domain.status`).
RECEIVED: Final = "received"
WHATSAPP_SOURCE: Final = "whatsapp"
# `webhook_events.outcome` of a change recorded as it came, and of an item that could not be read.
RECORDED: Final = "recorded"
UNPARSEABLE: Final = "unparseable"
REACTION_TYPE: Final = "reaction"


class ConversationStatus(StrEnum):
    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"


class MediaStatus(StrEnum):
    PENDING = "pending"
    STORED = "stored"
    FAILED = "failed"
