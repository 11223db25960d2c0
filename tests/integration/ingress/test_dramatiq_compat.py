"""The ingress and Dramatiq declare the same queues the same way, and a real Dramatiq worker runs the
actor on what the ingress published, with the body byte-identical."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from domain import jobs
from ingress.message import encode_message
from ingress.publisher import RabbitPublisher
from tests.integration.ingress.support import QueueReader, whatsapp_body

pytestmark = pytest.mark.integration


async def publish(url: str, queue: str, actor: str, bodies: list[str]) -> None:
    publisher = RabbitPublisher(url, queues=[queue], confirm_timeout=5, reconnect_interval=0.2)
    await publisher.start()
    try:
        assert await publisher.wait_ready(10)
        for index, body in enumerate(bodies):
            message_id = str(uuid.uuid4())
            message = encode_message(
                queue_name=queue,
                actor_name=actor,
                body=body,
                received_at=1.5,
                request_id=f"r{index}",
                message_id=message_id,
            )
            await publisher.publish(queue, message, message_id)
    finally:
        await publisher.close(drain_timeout=5)


def run_worker(url: str, queue: str, actor_name: str, expected: int) -> list[tuple[Any, ...]]:
    broker = RabbitmqBroker(url=url, confirm_delivery=True)
    received: list[tuple[Any, ...]] = []

    @dramatiq.actor(broker=broker, queue_name=queue, actor_name=actor_name, max_retries=0)
    def handler(body: str, received_at: float, request_id: str) -> None:
        received.append((body, received_at, request_id))

    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        broker.join(queue, timeout=20_000)
    finally:
        worker.stop()
        broker.close()
    assert len(received) == expected
    return received


def test_worker_consumes_what_the_ingress_declared_and_published(vhost_url: str, queues: QueueReader) -> None:
    body = whatsapp_body('caf\\u00e9 \u00e9 \U0001f600 "quoted" \\\\ end').decode()
    other = '{"object":"whatsapp_business_account","entry":[]}'
    asyncio.run(publish(vhost_url, jobs.INBOUND_QUEUE, jobs.WHATSAPP_DELIVERY_ACTOR, [body, other]))

    received = run_worker(vhost_url, jobs.INBOUND_QUEUE, jobs.WHATSAPP_DELIVERY_ACTOR, expected=2)

    assert received[0] == (body, 1.5, "r0")
    assert received[0][0].encode() == body.encode()
    assert received[1] == (other, 1.5, "r1")


def test_ingress_accepts_queues_a_worker_declared_first(vhost_url: str) -> None:
    queue = f"compat_{uuid.uuid4().hex[:8]}"
    broker = RabbitmqBroker(url=vhost_url, confirm_delivery=True)
    broker.declare_queue(queue, ensure=True)
    broker.close()
    # Would fail with PRECONDITION_FAILED if any argument differed.
    asyncio.run(publish(vhost_url, queue, "compat_actor", ["{}"]))
    received = run_worker(vhost_url, queue, "compat_actor", expected=1)
    assert received == [("{}", 1.5, "r0")]
