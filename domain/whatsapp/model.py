"""The items one webhook delivery carries, as Meta documents them.

Each item keeps the object it was read from (`raw`) untouched, so whatever Meta adds later is
stored even before anything here knows about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
# Types that are a customer talking to an agent, so they count as unread.
NOT_UNREAD_TYPES = frozenset({"reaction", "system"})


@dataclass(frozen=True, slots=True)
class Profile:
    wa_id: str
    name: str | None


@dataclass(frozen=True, slots=True)
class MediaRef:
    media_id: str
    mime_type: str | None
    sha256: str | None
    filename: str | None


@dataclass(frozen=True, slots=True)
class Reaction:
    target_wamid: str
    # None when the customer removed their reaction (Meta sends the emoji empty or not at all).
    emoji: str | None


@dataclass(frozen=True, slots=True)
class NumberChange:
    """A customer moved to another number: `user_changed_number` (or the legacy
    `customer_changed_number`, which names the new number `new_wa_id`)."""

    old_wa_id: str
    new_wa_id: str
    form: str


@dataclass(frozen=True, slots=True)
class ChangeError:
    code: int | None
    title: str | None
    message: str | None
    details: str | None
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class InboundMessage:
    wamid: str
    sender: str
    timestamp: int
    type: str
    text: str | None
    context_wamid: str | None
    raw: Mapping[str, Any]
    media: MediaRef | None = None
    reaction: Reaction | None = None
    number_change: NumberChange | None = None
    # The message an `edit` or `revoke` refers to.
    target_wamid: str | None = None
    errors: tuple[ChangeError, ...] = ()

    @property
    def counts_as_unread(self) -> bool:
        return self.type not in NOT_UNREAD_TYPES


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    wamid: str
    status: str
    timestamp: int
    recipient_id: str | None
    errors: tuple[ChangeError, ...]
    conversation: Mapping[str, Any] | None
    pricing: Mapping[str, Any] | None
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Unparsed:
    """An item that could not be read, kept exactly as it came with the reason, so it is stored
    and counted instead of sinking what came with it.

    `kind` names the item: entry, change, contact, message, status or error.
    """

    kind: str
    reason: str
    raw: object
    entry_id: str = ""
    phone_number_id: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookChange:
    """One `entry[].changes[]` item: everything a single business number (or account) reported."""

    entry_id: str
    field: str
    value: Mapping[str, Any]
    phone_number_id: str | None
    display_phone_number: str | None
    contacts: tuple[Profile, ...] = ()
    messages: tuple[InboundMessage, ...] = ()
    statuses: tuple[StatusUpdate, ...] = ()
    errors: tuple[ChangeError, ...] = ()
    # Contacts, messages, statuses or errors of this change that could not be read.
    unparsed: tuple[Unparsed, ...] = ()

    @property
    def is_messages(self) -> bool:
        return self.field == "messages"

    @property
    def raw(self) -> dict[str, Any]:
        """The change object as Meta sent it (`field` and `value`)."""
        return {"field": self.field, "value": self.value}


@dataclass(frozen=True, slots=True)
class Delivery:
    changes: tuple[WebhookChange, ...] = field(default_factory=tuple)
    # Entries and changes that could not be read at all (no tenant can be told from them).
    unparsed: tuple[Unparsed, ...] = ()

    @property
    def message_count(self) -> int:
        return sum(len(c.messages) for c in self.changes)


class ParkReason(StrEnum):
    """Why a change waits in `parked_changes` instead of a tenant's inbox."""

    UNKNOWN_NUMBER = "unknown_number"  # replayed once a tenant adds the number
    UNPARSEABLE = "unparseable"  # no tenant can be told from it; kept for an operator
    UNSTORABLE = "unstorable"  # its tenant's database refused its values for good
