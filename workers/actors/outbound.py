"""`send_message`: deliver one queued outbound message through the Graph API (see the handler)."""

from __future__ import annotations

from uuid import UUID

import dramatiq
from dramatiq.middleware import CurrentMessage

from domain import jobs
from domain.errors import PermanentError
from workers.inbound.statuses import apply_pending_statuses
from workers.outbound import runtime
from workers.outbound.handler import SendCommand

# Bounded so a retried message never sits unacked near RabbitMQ's consumer timeout.
MAX_RETRIES = 8
# The process's send engine; the statuses that arrive before their wamid are the inbound path's.
engine = runtime.engine_for(apply_pending_statuses)


@dramatiq.actor(
    actor_name=jobs.SEND_MESSAGE_ACTOR, queue_name=jobs.OUTBOUND_QUEUE, max_retries=MAX_RETRIES,
    min_backoff=1_000, max_backoff=60_000, throws=(PermanentError,),
)  # fmt: skip
def send_message(organization_id: str, message_id: str, phone_number_id: str, to: str) -> None:
    current = CurrentMessage.get_current_message()
    retries = int(current.options.get("retries", 0)) if current is not None else 0
    command = SendCommand(
        UUID(organization_id), UUID(message_id), phone_number_id, to, retries >= MAX_RETRIES
    )
    engine().send(command)
