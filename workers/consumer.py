"""Dramatiq's RabbitMQ consumer with acks gathered and written together by the consumer thread.

Dramatiq acks a message from the worker thread that processed it by asking pika to call
`BlockingChannel.basic_ack` on the consumer thread: one thread-safe callback per ack, each waking
the consumer's I/O loop, turned by pika into a timer, then written and flushed on its own. At a
thousand messages a second that was a fifth of a worker process's GIL time. Here a worker thread
adds its delivery tag to a list and wakes the consumer thread only if no wake-up is pending; the
consumer thread then queues every ack gathered so far on the channel in one go, and its I/O loop
writes them on its next turn, which comes at once: that thread is always polling, waiting for
deliveries. An ack lost with the process or its connection means a redelivery, which every actor
handles already (at-least-once, made exactly-once by keys). Nacks keep Dramatiq's own path.
"""

from __future__ import annotations

import threading
from typing import Any

import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer
from dramatiq.errors import ConnectionClosed


class GatheredAckConsumer(_RabbitmqConsumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self._tags: list[int] = []
        self._wake_pending = False

    def ack(self, message: Any) -> None:
        try:
            self.known_tags.remove(message._tag)
        except KeyError:
            self.logger.warning("Failed to ack message: not in known tags.")
            return
        with self._lock:
            self._tags.append(message._tag)
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            self.connection.add_callback_threadsafe(self._write_acks)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as e:
            # The connection is gone and its unacked deliveries with it (RabbitMQ requeues them);
            # Dramatiq's consumer thread makes a new consumer.
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]

    def _write_acks(self) -> None:
        """On the consumer thread: queue every gathered ack on the channel."""
        with self._lock:
            tags, self._tags = self._tags, []
            self._wake_pending = False
        # `_impl` is the channel of pika's asynchronous core, which the blocking channel wraps;
        # its basic_ack only queues the frame on the connection's output. Pika has no public way
        # to do that: `BlockingChannel.basic_ack` always flushes (runs the I/O loop until the frame
        # is written), and the public asynchronous channel exists only on a `SelectConnection`,
        # which would replace Dramatiq's whole consumer. Pinned by the test of this consumer.
        channel = self.channel._impl
        for tag in tags:
            channel.basic_ack(delivery_tag=tag)


class GatheredAckRabbitmqBroker(RabbitmqBroker):
    @property
    def consumer_class(self) -> type[_RabbitmqConsumer]:
        return GatheredAckConsumer
