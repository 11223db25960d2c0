"""Dramatiq's RabbitMQ consumer with acks that do not each drive pika's I/O loop.

Dramatiq acks a message from the worker thread that processed it by scheduling
`BlockingChannel.basic_ack` on the consumer thread, which writes the frame and then runs the I/O
loop until it is flushed. At a thousand messages a second those flushes were a fifth of a worker
process's GIL time. Here the ack frame is queued on the channel and written by the consumer
thread's I/O loop on its next turn, which comes at once: that thread is always polling, waiting for
deliveries. An ack lost with the process means a redelivery, which every actor handles already
(at-least-once, made exactly-once by keys). Nacks keep Dramatiq's flush.
"""

from __future__ import annotations

from typing import Any

from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer


class _QueuedAcks:
    """The consumer's `BlockingChannel`, with `basic_ack` left to the I/O loop to write."""

    def __init__(self, channel: Any) -> None:
        self._channel = channel

    def basic_ack(self, delivery_tag: int = 0, multiple: bool = False) -> None:
        # `_impl` is the channel of pika's asynchronous core, which the blocking channel wraps;
        # its basic_ack only queues the frame on the connection's output. Pika has no public way
        # to do that: `BlockingChannel.basic_ack` always flushes (runs the I/O loop until the frame
        # is written), and the public asynchronous channel exists only on a `SelectConnection`,
        # which would replace Dramatiq's whole consumer. Pinned by the test of this consumer.
        self._channel._impl.basic_ack(delivery_tag=delivery_tag, multiple=multiple)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)


class QueuedAckConsumer(_RabbitmqConsumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.channel = _QueuedAcks(self.channel)


class QueuedAckRabbitmqBroker(RabbitmqBroker):
    @property
    def consumer_class(self) -> type[_RabbitmqConsumer]:
        return QueuedAckConsumer
