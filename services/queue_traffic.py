"""Messages into and out of each queue per second, counted by the fleet itself (`fleet_counters`).

RabbitMQ keeps such rates only in its management plugin, which a default deployment does not run.
So every publisher and consumer of the fleet counts: a message in when it is published (the
ingress's confirmed webhook publishes, and every Dramatiq broker's enqueue, through `QueueTraffic`),
a message out when its consumer acks or rejects it. Counts go by the queue the message was really
published to or taken from: a delayed message goes into `<queue>.DQ`, and into `<queue>` again
when the worker holding it moves it there at its due time, so in and out of one queue balance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import dramatiq
from dramatiq.broker import MessageProxy
from redis import Redis

from services import fleet_counters
from services.fleet_counters import Counts, FleetCounters

FAMILY: Final = "queues"
RATE_WINDOW_SECONDS: Final = 10


def count_in(counters: Counts, queue: str, n: int = 1) -> None:
    counters.add(FAMILY, f"in:{queue}", n)


def count_out(counters: Counts, queue: str, n: int = 1) -> None:
    counters.add(FAMILY, f"out:{queue}", n)


class QueueTraffic(dramatiq.Middleware):
    """Counts every message this process's broker publishes, acks or rejects."""

    def __init__(self, counters: FleetCounters) -> None:
        self.counters = counters

    def after_enqueue(
        self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int | None
    ) -> None:
        count_in(self.counters, message.queue_name)

    def after_ack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        count_out(self.counters, message.queue_name)

    def after_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        count_out(self.counters, message.queue_name)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.counters.close()


@dataclass(frozen=True, slots=True)
class QueueRate:
    queue: str
    # Messages per second over the last RATE_WINDOW_SECONDS; None where nobody could say.
    rate_in: float | None
    rate_out: float | None


def queue_rates(
    redis: Redis,
    queues: Iterable[str],
    namespace: str = fleet_counters.DEFAULT_NAMESPACE,
    *,
    window_seconds: int = RATE_WINDOW_SECONDS,
    now: float | None = None,
) -> dict[str, QueueRate]:
    """The rate in and out of each queue, as the fleet counted it (0.0: nothing moved)."""
    rates = fleet_counters.rates(redis, namespace, FAMILY, window_seconds, now=now)
    return {q: QueueRate(q, rates.get(f"in:{q}", 0.0), rates.get(f"out:{q}", 0.0)) for q in queues}
