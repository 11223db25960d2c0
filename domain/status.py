"""The message status machine.

Statuses arrive out of order (read before delivered is common), so a status only ever moves a message
forward: `queued < sending < sent < delivered < read`, and `failed` wins over everything before
`read` (a message that was read was delivered, whatever a late failure says).
"""

from __future__ import annotations

from enum import StrEnum


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


_RANK: dict[MessageStatus, int] = {
    MessageStatus.QUEUED: 0,
    MessageStatus.SENDING: 1,
    MessageStatus.SENT: 2,
    MessageStatus.DELIVERED: 3,
    MessageStatus.FAILED: 4,
    MessageStatus.READ: 5,
}


def rank(status: MessageStatus) -> int:
    return _RANK[status]


def parse_webhook_status(value: str) -> MessageStatus | None:
    """Meta's status string as ours; `played` (voice notes) means the same as `read`."""
    if value == "played":
        return MessageStatus.READ
    try:
        return MessageStatus(value)
    except ValueError:
        return None


def advances(current: MessageStatus, incoming: MessageStatus) -> bool:
    """Whether `incoming` should replace `current`. Never downgrades; terminal states stay."""
    if current is MessageStatus.READ:
        return False
    if current is MessageStatus.FAILED:
        return False
    return rank(incoming) > rank(current)
