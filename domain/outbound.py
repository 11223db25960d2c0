"""Rules of an outbound send that need no I/O: the customer-service window, and what a send job
does with the message it was given.

The window: WhatsApp lets a business answer freely for 24 hours after the customer's last message;
outside it only an approved template may open the conversation again (Meta's error 131047).

A send job may run more than once for one message (redelivery after a crash, a duplicate publish, a
sweep's belt-and-braces enqueue), so it first looks at the message and decides:

- a wamid is recorded, or the message is settled (sent, delivered, read, failed, ambiguous):
  nothing to do;
- `queued`: send it;
- `sending` without a wamid: an earlier attempt began a call and never recorded its outcome. While
  that attempt's lease runs it may still be in flight: wait. Once the lease is over it crashed
  mid-call, and Meta may or may not have the message: record `ambiguous`, never send again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from uuid import UUID

from domain.jobs import OUTBOUND_QUEUE, SEND_MESSAGE_ACTOR
from domain.ports import Job

CUSTOMER_WINDOW: Final = timedelta(hours=24)

QUEUED: Final = "queued"
SENDING: Final = "sending"
SENT: Final = "sent"
FAILED: Final = "failed"
AMBIGUOUS: Final = "ambiguous"

OUTBOUND: Final = "outbound"  # messages.direction of what the business sends
REACTION_TYPE: Final = "reaction"


def within_customer_window(last_inbound_at: datetime | None, now: datetime) -> bool:
    """Whether a free-form (non-template) message may be sent to this customer now."""
    return last_inbound_at is not None and now - last_inbound_at < CUSTOMER_WINDOW


class ClaimVerdict(StrEnum):
    SEND = "send"
    DONE = "done"
    WAIT = "wait"
    AMBIGUOUS = "ambiguous"


def decide_claim(status: str, wamid: str | None, lease_expired: bool) -> ClaimVerdict:
    if wamid is not None or status not in (QUEUED, SENDING):
        return ClaimVerdict.DONE
    if status == QUEUED:
        return ClaimVerdict.SEND
    return ClaimVerdict.AMBIGUOUS if lease_expired else ClaimVerdict.WAIT


def send_job(
    organization_id: UUID, message_id: UUID, phone_number_id: str, to: str, delay_ms: int | None = None
) -> Job:
    """The `send_message` job of a queued message. The number and recipient travel with it so the
    worker can pace the send before it touches the row."""
    return Job(
        OUTBOUND_QUEUE,
        SEND_MESSAGE_ACTOR,
        kwargs={
            "organization_id": str(organization_id),
            "message_id": str(message_id),
            "phone_number_id": phone_number_id,
            "to": to,
        },
        delay_ms=delay_ms,
    )
