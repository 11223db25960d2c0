"""The ingress's only way out: durable publishes to RabbitMQ, acknowledged by the broker.

One robust connection and one confirm channel per process. Publishes are pipelined: each request
awaits its own confirm while others are written on the same channel, so throughput is bounded by
the broker, not by round trips. A publish is reported as done only once RabbitMQ has confirmed it
(persisted it to a durable queue); everything else raises `PublishFailed`, which the routes turn
into a 503 so the sender delivers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Final, Protocol, cast

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from pamqp.commands import Basic

from ingress.queues import dramatiq_declarations

logger = logging.getLogger(__name__)

# Persistent, as Dramatiq publishes. aiormq matches a returned (unroutable) message to its publish
# by message_id, and writes one into the properties it is given: so every publish gets fresh
# properties carrying its own id (Dramatiq's message id, which also helps tracing).
_PERSISTENT: Final = 2


class PublishFailed(Exception):
    """The message may not be durable; the sender must be asked to retry."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


class Publisher(Protocol):
    async def start(self) -> None: ...

    async def close(self, drain_timeout: float) -> None: ...

    def is_ready(self) -> bool: ...

    async def publish(self, queue_name: str, body: bytes, message_id: str) -> None:
        """Return once the broker has confirmed `body` on `queue_name`; else raise PublishFailed."""
        ...


class RabbitPublisher:
    def __init__(
        self,
        url: str,
        *,
        queues: Iterable[str],
        confirm_timeout: float,
        reconnect_interval: float,
    ) -> None:
        self._url = url
        self._queues = tuple(queues)
        self._confirm_timeout = confirm_timeout
        self._reconnect_interval = reconnect_interval
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        """Connect in the background, so the process serves /healthz and 503s while the broker is away."""
        self._connect_task = asyncio.create_task(self._connect_until_up(), name="rabbitmq-connect")

    async def wait_ready(self, timeout: float) -> bool:
        """Whether the channel opened within `timeout`; for start-up scripts and tests."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.is_ready():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def _connect_until_up(self) -> None:
        # aio-pika reconnects a robust connection only after a first success; until then, retry here.
        while True:
            try:
                connection = await aio_pika.connect_robust(
                    self._url,
                    timeout=self._confirm_timeout,
                    reconnect_interval=self._reconnect_interval,
                    client_properties={"connection_name": "adsapp-ingress"},
                )
            except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
                logger.warning(
                    "rabbitmq connection failed; retrying",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_in_s": self._reconnect_interval},
                )
                await asyncio.sleep(self._reconnect_interval)
                continue
            try:
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                await self._declare(channel)
            except asyncio.CancelledError:
                await connection.close()
                raise
            except Exception as exc:
                # PRECONDITION_FAILED here means a queue exists with other arguments: say so loudly.
                logger.error(
                    "rabbitmq channel or queue declaration failed; retrying",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_in_s": self._reconnect_interval},
                )
                await connection.close()
                await asyncio.sleep(self._reconnect_interval)
                continue
            self._connection = connection
            self._channel = channel
            logger.info("rabbitmq channel open", extra={"queues": list(self._queues)})
            return

    async def _declare(self, channel: AbstractRobustChannel) -> None:
        # Declared through the robust channel, so they are declared again after a reconnect.
        for queue_name in self._queues:
            for declaration in dramatiq_declarations(queue_name):
                await channel.declare_queue(declaration.name, durable=True, arguments=declaration.arguments)

    def is_ready(self) -> bool:
        connection, channel = self._connection, self._channel
        return (
            connection is not None
            and channel is not None
            and connection.connected.is_set()
            and not channel.is_closed
        )

    async def publish(self, queue_name: str, body: bytes, message_id: str) -> None:
        # Fail at once while disconnected: waiting for a reconnect would only pile requests up.
        if not self.is_ready():
            raise PublishFailed("unavailable", "no open channel to rabbitmq")
        assert self._channel is not None
        self._in_flight += 1
        self._idle.clear()
        try:
            async with asyncio.timeout(self._confirm_timeout):
                try:
                    await self._publish_once(queue_name, body, message_id)
                except aiormq.exceptions.PublishError:
                    # Returned unroutable, so certainly not enqueued: the queue was deleted under us.
                    # Declare it again and try once more.
                    await self._declare(self._channel)
                    await self._publish_once(queue_name, body, message_id)
        except TimeoutError:
            raise PublishFailed("timeout", f"no confirm within {self._confirm_timeout}s") from None
        except aiormq.exceptions.PublishError as exc:
            raise PublishFailed("unroutable", str(exc)) from None
        except aiormq.exceptions.DeliveryError as exc:
            raise PublishFailed("nacked", str(exc)) from None
        except (aiormq.exceptions.AMQPError, RuntimeError, OSError) as exc:
            # ChannelInvalidStateError is a RuntimeError; connection loss surfaces as either kind.
            raise PublishFailed("unavailable", f"{type(exc).__name__}: {exc}") from None
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _publish_once(self, queue_name: str, body: bytes, message_id: str) -> None:
        assert self._channel is not None
        # aiormq's concrete channel: its basic_publish takes `wait`, which the abstract one omits.
        channel = cast(aiormq.Channel, await self._channel.get_underlay_channel())
        properties = Basic.Properties(delivery_mode=_PERSISTENT, message_id=message_id)
        # wait=False: no per-publish socket drain; the confirm awaited below already proves the
        # frame was written and persisted, and a dead connection fails the confirm instead.
        await channel.basic_publish(
            body, exchange="", routing_key=queue_name, properties=properties, mandatory=True, wait=False
        )

    async def close(self, drain_timeout: float) -> None:
        """Let in-flight publishes get their confirms (bounded), then close the connection."""
        started = time.monotonic()
        if self._in_flight:
            try:
                async with asyncio.timeout(drain_timeout):
                    await self._idle.wait()
            except TimeoutError:
                logger.error("closing with publishes unconfirmed", extra={"in_flight": self._in_flight})
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
            await asyncio.gather(self._connect_task, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._channel = None
        logger.info("rabbitmq connection closed", extra={"drain_s": round(time.monotonic() - started, 3)})


class NullPublisher:
    """Accepts everything and sends nothing: only for measuring the app without a broker."""

    async def start(self) -> None:
        return None

    async def close(self, drain_timeout: float) -> None:
        return None

    def is_ready(self) -> bool:
        return True

    async def publish(self, queue_name: str, body: bytes, message_id: str) -> None:
        return None
