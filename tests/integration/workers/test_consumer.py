"""The workers' consumer acks every message it processed, though its acks are written by the I/O
loop instead of each being flushed on its own: after the worker stops, nothing is requeued."""

from __future__ import annotations

import threading
import time
import uuid

import dramatiq
import pytest

from config import Settings
from devkit.processes import queue_depth
from workers.consumer import QueuedAckRabbitmqBroker

pytestmark = pytest.mark.integration


def test_processed_messages_are_acked_and_nothing_is_requeued_on_stop(settings: Settings) -> None:
    broker = QueuedAckRabbitmqBroker(url=settings.rabbitmq_url, confirm_delivery=True, middleware=[])
    queue = f"acks_{uuid.uuid4().hex[:8]}"
    done: list[int] = []
    lock = threading.Lock()

    @dramatiq.actor(broker=broker, queue_name=queue, actor_name=f"{queue}_actor")
    def handler(n: int) -> None:
        with lock:
            done.append(n)

    total = 300
    for n in range(total):
        handler.send(n)
    worker = dramatiq.Worker(broker, worker_threads=4)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while len(done) < total and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
        broker.close()
    assert sorted(done) == list(range(total))
    # Unacked messages go back to the queue when the consumer's connection closes.
    assert queue_depth(settings.rabbitmq_url, queue) == 0
