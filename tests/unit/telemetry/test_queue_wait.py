"""Time in queue: from enqueue, or from the end of a delay for delayed and retried messages."""

from __future__ import annotations

import uuid

import dramatiq
from dramatiq.broker import MessageProxy
from prometheus_client import REGISTRY

from workers.metrics import QueueWait


def _observed(queue: str) -> tuple[float, float]:
    count = REGISTRY.get_sample_value("adsapp_queue_wait_seconds_count", {"queue": queue}) or 0.0
    total = REGISTRY.get_sample_value("adsapp_queue_wait_seconds_sum", {"queue": queue}) or 0.0
    return count, total


def _message(queue: str, timestamp_ms: int, **options: object) -> MessageProxy:
    message = dramatiq.Message(queue_name=queue, actor_name="a", args=(), kwargs={}, options=dict(options),
                               message_timestamp=timestamp_ms)  # fmt: skip
    return MessageProxy(message)


def test_wait_from_enqueue_and_from_eta() -> None:
    queue = f"wait_{uuid.uuid4().hex[:6]}"
    middleware = QueueWait(clock=lambda: 1_000.0)
    middleware.before_process_message(None, _message(queue, 998_500))  # queued 1.5 s ago
    # Delayed from the DQ: enqueued 60 s ago, due 0.25 s ago; labelled by its canonical queue.
    middleware.before_process_message(None, _message(f"{queue}.DQ", 940_000, eta=999_750))
    count, total = _observed(queue)
    assert count == 2
    assert total == 1.75
