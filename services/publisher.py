"""Publishing jobs through the Dramatiq broker (confirmed, persistent)."""

from __future__ import annotations

import dramatiq

from domain.ports import Job


class BrokerJobPublisher:
    """Enqueues a `Job` by queue and actor name, so publishers need not import actor modules.

    Publish-only, shared by the workers and the ingress API (with a confirm-mode RabbitmqBroker it
    returns once RabbitMQ has the message).
    """

    def __init__(self, broker: dramatiq.Broker) -> None:
        self._broker = broker

    def publish(self, job: Job) -> None:
        message: dramatiq.Message[object] = dramatiq.Message(
            queue_name=job.queue,
            actor_name=job.actor,
            args=tuple(job.args),
            kwargs=dict(job.kwargs),
            options={},
        )
        self._broker.enqueue(message, delay=job.delay_ms)

    def close(self) -> None:
        self._broker.close()
