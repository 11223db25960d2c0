"""A no-op actor on a default Dramatiq RabbitMQ broker (Dramatiq's own middleware, nothing of the
fleet's), for the drain baseline of bench/inbound.py: `dramatiq bench.noop_worker --queues bench_noop`.
Plain on purpose: it is the like-for-like of the reference machine's no-op drain figure."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

broker = RabbitmqBroker(url=os.environ["RABBITMQ_URL"])
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench_noop", max_retries=0)
def noop(body: str, received_at: float | None = None, request_id: str | None = None) -> None:
    return None
