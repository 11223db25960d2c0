"""Queue declarations identical to the ones Dramatiq's RabbitmqBroker makes.

RabbitMQ refuses to redeclare a queue with other arguments (PRECONDITION_FAILED), so the ingress,
which publishes before any worker may have started, declares each queue with exactly the arguments a
Dramatiq worker will later use for it: the queue and its delay queue `<q>.DQ` dead-letter into
`<q>.XQ`, which keeps dead messages for `dramatiq_dead_message_ttl` ms (7 days by default).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

# Same variable and default as dramatiq.brokers.rabbitmq.DEAD_MESSAGE_TTL, read the same way.
DEAD_MESSAGE_TTL_MS = int(os.getenv("dramatiq_dead_message_ttl", str(86400000 * 7)))  # noqa: SIM112


@dataclass(frozen=True, slots=True)
class QueueDeclaration:
    name: str
    arguments: dict[str, Any]


def delay_queue_name(queue_name: str) -> str:
    return f"{queue_name}.DQ"


def dead_letter_queue_name(queue_name: str) -> str:
    return f"{queue_name}.XQ"


def dramatiq_declarations(queue_name: str) -> tuple[QueueDeclaration, ...]:
    """The three durable queues Dramatiq declares for `queue_name`, in its order."""
    dead_lettering = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_letter_queue_name(queue_name),
    }
    return (
        QueueDeclaration(queue_name, dict(dead_lettering)),
        QueueDeclaration(delay_queue_name(queue_name), dict(dead_lettering)),
        QueueDeclaration(dead_letter_queue_name(queue_name), {"x-message-ttl": DEAD_MESSAGE_TTL_MS}),
    )
