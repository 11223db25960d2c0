"""How deep each queue is, read from RabbitMQ: one function for the scheduler's gauges and the console.

Without RabbitMQ's management plugin only AMQP answers: a passive declare gives the ready count and
the consumers of a queue and of its `.DQ` and `.XQ`, and the oldest ready message's age is read from
Dramatiq's `message_timestamp` by peeking at the head message and putting it straight back (the
management UI's "get messages, requeue" does the same). Unacknowledged counts are known only to the
broker's own statistics, so they come from the management HTTP API when `management_url` is given
(`http://guest:guest@127.0.0.1:15672`), and are `None` otherwise; so do the broker's own rates of
messages published into and acknowledged out of each queue (`services.queue_traffic` counts them
from the fleet's side where there is no management plugin).

A queue nobody has declared yet is reported with `exists=False`, not as an error: the scheduler may
run before the first worker of a group.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

import httpx
import orjson
import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

DELAY_SUFFIX: Final = ".DQ"
DEAD_SUFFIX: Final = ".XQ"


@dataclass(frozen=True, slots=True)
class QueueDepth:
    queue: str
    exists: bool
    ready: int
    consumers: int
    delayed: int
    dead: int
    # None where it cannot be known: unacked without the management API, age on an empty queue or
    # a head message that is not Dramatiq's.
    unacked: int | None
    oldest_ready_age_seconds: float | None
    # Messages per second published into / acknowledged out of the queue, by the management API.
    rate_in: float | None = None
    rate_out: float | None = None


@dataclass(frozen=True, slots=True)
class _Managed:
    unacked: int | None
    rate_in: float | None
    rate_out: float | None


_UNMANAGED = _Managed(None, None, None)


class QueueStatsError(Exception):
    """RabbitMQ could not be asked (connection refused, bad credentials, management API error)."""


def queue_depths(
    amqp_url: str,
    queues: Iterable[str],
    *,
    management_url: str | None = None,
    peek_oldest: bool = True,
    timeout: float = 5.0,
    clock: Callable[[], float] = time.time,
) -> list[QueueDepth]:
    """The depth of each queue, in the order given. Raises QueueStatsError if RabbitMQ cannot be reached."""
    names = list(queues)
    managed = _management(management_url, _vhost(amqp_url), names, timeout) if management_url else {}
    params = pika.URLParameters(amqp_url)
    params.socket_timeout = timeout
    params.blocked_connection_timeout = timeout
    params.client_properties = {"connection_name": "adsapp-queue-stats"}
    try:
        connection = pika.BlockingConnection(params)
    except pika.exceptions.AMQPError as exc:
        raise QueueStatsError(f"rabbitmq unreachable: {type(exc).__name__}: {exc}") from exc
    try:
        reader = _Reader(connection)
        return [reader.depth(name, managed.get(name, _UNMANAGED), peek_oldest, clock) for name in names]
    except pika.exceptions.AMQPError as exc:
        raise QueueStatsError(f"rabbitmq failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if connection.is_open:
            connection.close()


class _Reader:
    def __init__(self, connection: pika.BlockingConnection) -> None:
        self._connection = connection
        self._channel: BlockingChannel = connection.channel()

    def _declared(self, name: str) -> tuple[int, int] | None:
        """(ready, consumers), or None if the queue does not exist (which closes the channel)."""
        try:
            method = self._channel.queue_declare(name, passive=True).method
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            self._channel = self._connection.channel()
            return None
        return int(method.message_count), int(method.consumer_count)

    def depth(
        self, name: str, managed: _Managed, peek_oldest: bool, clock: Callable[[], float]
    ) -> QueueDepth:
        main = self._declared(name)
        delayed = self._declared(name + DELAY_SUFFIX)
        dead = self._declared(name + DEAD_SUFFIX)
        ready, consumers = main or (0, 0)
        age = self._oldest_age(name, clock) if peek_oldest and ready else None
        return QueueDepth(
            queue=name,
            exists=main is not None,
            ready=ready,
            consumers=consumers,
            delayed=delayed[0] if delayed else 0,
            dead=dead[0] if dead else 0,
            unacked=managed.unacked,
            oldest_ready_age_seconds=age,
            rate_in=managed.rate_in,
            rate_out=managed.rate_out,
        )

    def _oldest_age(self, name: str, clock: Callable[[], float]) -> float | None:
        method, _properties, body = self._channel.basic_get(name, auto_ack=False)
        if method is None:
            return None  # consumed since the declare
        # Requeued at once: RabbitMQ puts it back at its place at the head of the queue.
        self._channel.basic_nack(method.delivery_tag, requeue=True)
        return _age_of(body, clock())


def _age_of(body: bytes, now: float) -> float | None:
    try:
        stamp = orjson.loads(body).get("message_timestamp")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(stamp, int | float) or isinstance(stamp, bool):
        return None
    return max(0.0, now - stamp / 1000.0)


def _vhost(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _management(management_url: str, vhost: str, names: list[str], timeout: float) -> dict[str, _Managed]:
    parts = urlsplit(management_url)
    auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
    if parts.hostname is None:
        raise QueueStatsError("management url has no host")
    # Credentials travel as basic auth, not in the URL (httpx would not use them from there).
    base = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()
    url = f"{base.rstrip('/')}/api/queues/{quote(vhost, safe='')}"
    try:
        answer = httpx.get(
            url,
            auth=auth,
            timeout=timeout,
            params={"columns": "name,messages_unacknowledged,message_stats"},
        )
        answer.raise_for_status()
        rows: list[dict[str, Any]] = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise QueueStatsError(f"rabbitmq management api failed: {type(exc).__name__}: {exc}") from exc
    wanted = set(names)
    found: dict[str, _Managed] = {}
    for row in rows:
        name = row.get("name")
        if name not in wanted:
            continue
        count = row.get("messages_unacknowledged")
        stats = row.get("message_stats") or {}
        found[str(name)] = _Managed(
            int(count) if isinstance(count, int) else None,
            _rate(stats, "publish_details"),
            _rate(stats, "ack_details"),
        )
    return found


def _rate(stats: Any, name: str) -> float | None:
    # A queue nothing has been published to has no message_stats at all: its rate is 0, not unknown.
    if not isinstance(stats, dict):
        return None
    details = stats.get(name)
    if details is None:
        return 0.0
    rate = details.get("rate") if isinstance(details, dict) else None
    return float(rate) if isinstance(rate, int | float) and not isinstance(rate, bool) else None
