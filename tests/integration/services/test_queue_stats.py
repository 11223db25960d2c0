"""Queue depths read from the real RabbitMQ of this test run's vhost."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import httpx
import orjson
import pika
import pytest

from config import Settings
from devkit.processes import wait_for
from ingress.queues import dramatiq_declarations
from services.queue_stats import QueueStatsError, queue_depths

pytestmark = pytest.mark.integration

MANAGEMENT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")


def _management_enabled() -> bool:
    try:
        return httpx.get(
            f"{MANAGEMENT_URL.split('@')[-1]}/api/overview", auth=("guest", "guest"), timeout=1
        ).is_success
    except httpx.HTTPError:
        return False


@pytest.fixture
def queue(settings: Settings) -> Iterator[tuple[str, pika.adapters.blocking_connection.BlockingChannel]]:
    name = f"stats-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(settings.rabbitmq_url))
    channel = connection.channel()
    for declaration in dramatiq_declarations(name):
        channel.queue_declare(declaration.name, durable=True, arguments=declaration.arguments)
    yield name, channel
    for declaration in dramatiq_declarations(name):
        channel.queue_delete(declaration.name)
    connection.close()


def _publish(
    channel: pika.adapters.blocking_connection.BlockingChannel, queue: str, timestamp_ms: int
) -> None:
    body = orjson.dumps(
        {"queue_name": queue, "message_id": uuid.uuid4().hex, "message_timestamp": timestamp_ms}
    )
    channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))


def test_ready_delayed_dead_and_oldest_age(settings: Settings, queue) -> None:
    name, channel = queue
    now = 1_900_000_000.0
    _publish(channel, name, int((now - 42.5) * 1000))  # the head: the oldest
    _publish(channel, name, int((now - 1) * 1000))
    _publish(channel, name + ".DQ", int(now * 1000))
    for _ in range(3):
        _publish(channel, name + ".XQ", int(now * 1000))

    [depth] = queue_depths(settings.rabbitmq_url, [name], clock=lambda: now)

    assert depth.exists
    assert (depth.ready, depth.delayed, depth.dead, depth.consumers) == (2, 1, 3, 0)
    assert depth.oldest_ready_age_seconds == pytest.approx(42.5, abs=0.01)
    assert depth.unacked is None  # not known without the management API
    # The peek put the head message back: it is still first, and nothing was lost.
    [again] = queue_depths(settings.rabbitmq_url, [name], clock=lambda: now)
    assert again.ready == 2
    assert again.oldest_ready_age_seconds == pytest.approx(42.5, abs=0.01)


def test_consumers_are_counted(settings: Settings, queue) -> None:
    name, channel = queue
    channel.basic_consume(name, lambda *args: None)
    [depth] = queue_depths(settings.rabbitmq_url, [name], peek_oldest=False)
    assert depth.consumers == 1
    assert depth.oldest_ready_age_seconds is None


def test_missing_queue_is_reported_not_raised(settings: Settings, queue) -> None:
    name, _ = queue
    missing = f"absent-{uuid.uuid4().hex[:8]}"
    first, second = queue_depths(settings.rabbitmq_url, [missing, name])
    assert (first.queue, first.exists, first.ready) == (missing, False, 0)
    assert (second.queue, second.exists) == (name, True)  # the channel reopened after the 404


def test_empty_queue_has_no_age(settings: Settings, queue) -> None:
    name, _ = queue
    [depth] = queue_depths(settings.rabbitmq_url, [name])
    assert (depth.ready, depth.oldest_ready_age_seconds) == (0, None)


def test_non_dramatiq_head_message_has_no_age(settings: Settings, queue) -> None:
    name, channel = queue
    channel.basic_publish("", name, b"not json", pika.BasicProperties(delivery_mode=2))
    [depth] = queue_depths(settings.rabbitmq_url, [name])
    assert (depth.ready, depth.oldest_ready_age_seconds) == (1, None)


def test_unreachable_broker_is_a_clear_error() -> None:
    with pytest.raises(QueueStatsError, match="rabbitmq unreachable"):
        queue_depths("amqp://guest:guest@127.0.0.1:1/%2F", ["inbound"], timeout=1)


def test_unreachable_management_api_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(QueueStatsError, match="management api"):
        queue_depths(
            settings.rabbitmq_url, ["inbound"], management_url="http://guest:guest@127.0.0.1:1", timeout=1
        )


@pytest.mark.skipif(not _management_enabled(), reason="RabbitMQ's management plugin is not enabled here")
def test_unacked_from_the_management_api(settings: Settings, queue) -> None:
    name, channel = queue
    _publish(channel, name, 0)
    method, _, _ = channel.basic_get(name, auto_ack=False)
    assert method is not None

    # The management API's statistics are collected every few seconds, not at each change.
    def unacked() -> int | None:
        [depth] = queue_depths(
            settings.rabbitmq_url, [name], management_url=MANAGEMENT_URL, peek_oldest=False
        )
        return depth.unacked

    assert wait_for(lambda: unacked() == 1, timeout=15, interval=0.5)
