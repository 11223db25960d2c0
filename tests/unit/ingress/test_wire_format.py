"""The ingress's queue arguments and message bytes are what Dramatiq itself would make and read."""

from __future__ import annotations

import time
import uuid

import dramatiq.brokers.rabbitmq as dramatiq_rabbitmq
from dramatiq import Message
from dramatiq.common import dq_name, xq_name

from ingress.ids import new_id
from ingress.message import encode_message
from ingress.queues import DEAD_MESSAGE_TTL_MS, dramatiq_declarations


def test_declarations_match_dramatiq() -> None:
    broker = dramatiq_rabbitmq.RabbitmqBroker(url="amqp://127.0.0.1:1/%2F")  # connects lazily: never here
    main, delayed, dead = dramatiq_declarations("inbound")
    assert (main.name, delayed.name, dead.name) == ("inbound", dq_name("inbound"), xq_name("inbound"))
    assert main.arguments == broker._build_queue_arguments("inbound")
    assert delayed.arguments == broker._build_queue_arguments(dq_name("inbound"))
    assert dead.arguments == {"x-message-ttl": dramatiq_rabbitmq.DEAD_MESSAGE_TTL}
    assert DEAD_MESSAGE_TTL_MS == dramatiq_rabbitmq.DEAD_MESSAGE_TTL


def test_message_decodes_as_a_dramatiq_message() -> None:
    body = '{"a":"caf\\u00e9 é 😀"}'
    raw = encode_message(
        queue_name="inbound",
        actor_name="process_whatsapp_delivery",
        body=body,
        received_at=12.5,
        request_id="rid",
        message_id="0b9f6c1e-8f1a-4c5d-9e2f-3a4b5c6d7e8f",
    )
    message = Message.decode(raw)
    assert message.queue_name == "inbound"
    assert message.actor_name == "process_whatsapp_delivery"
    assert list(message.args) == [body]
    assert message.kwargs == {"received_at": 12.5, "request_id": "rid"}
    assert message.options == {}
    assert message.message_id == "0b9f6c1e-8f1a-4c5d-9e2f-3a4b5c6d7e8f"
    assert abs(message.message_timestamp / 1000 - time.time()) < 5


def test_ids_are_unique_uuid_text() -> None:
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    for value in list(ids)[:100]:
        assert str(uuid.UUID(value)) == value
        assert uuid.UUID(value).version == 4
