"""The workers' consumer acks every message it processed, though its acks are gathered and written
by the I/O loop instead of each being flushed on its own: after the worker stops, nothing is
requeued."""

from __future__ import annotations

import threading
import time
import uuid

import dramatiq
import pytest

from config import Settings
from devkit.processes import queue_depth
from workers.consumer import GatheredAckRabbitmqBroker

pytestmark = pytest.mark.integration


def test_processed_messages_are_acked_and_nothing_is_requeued_on_stop(settings: Settings) -> None:
    broker = GatheredAckRabbitmqBroker(url=settings.rabbitmq_url, confirm_delivery=True, middleware=[])
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


def test_acks_from_many_threads_wake_the_consumer_once_and_every_one_lands(settings: Settings) -> None:
    broker = GatheredAckRabbitmqBroker(url=settings.rabbitmq_url, confirm_delivery=True, middleware=[])
    queue = f"acks_{uuid.uuid4().hex[:8]}"

    @dramatiq.actor(broker=broker, queue_name=queue, actor_name=f"{queue}_actor")
    def handler(n: int) -> None:
        pass

    total = 60
    for n in range(total):
        handler.send(n)
    consumer = broker.consume(queue, prefetch=total, timeout=1000)
    try:
        received = []
        deadline = time.monotonic() + 30
        while len(received) < total and time.monotonic() < deadline:
            message = next(consumer)
            if message is not None:
                received.append(message)
        assert len(received) == total
        connection = consumer.connection  # type: ignore[attr-defined]
        wakes: list[object] = []
        wake = connection.add_callback_threadsafe

        def counted(callback: object) -> None:
            wakes.append(callback)
            wake(callback)

        connection.add_callback_threadsafe = counted
        # The consumer thread is not running its loop meanwhile, as when it is busy with a
        # delivery: every ack from every thread waits for the one wake-up already asked.
        threads = [
            threading.Thread(target=lambda part=part: [consumer.ack(m) for m in part])
            for part in (received[i::6] for i in range(6))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(wakes) == 1
        connection.process_data_events(time_limit=0.5)
        assert not consumer.known_tags  # type: ignore[attr-defined]
    finally:
        consumer.close()
        broker.close()
    # Had an ack not been written, its message would be back in the queue now.
    assert queue_depth(settings.rabbitmq_url, queue) == 0
