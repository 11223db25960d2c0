"""The fleet-wide figures of the console that come from the broker and Redis, not Postgres: queue
depths with their rates in and out, webhook answers, and pacing deferrals per number.

A figure that cannot be read is None (shown as "—"), never a guess: the broker's own rates when
its management API is configured, else the rates the fleet counted (`services.queue_traffic`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from redis import Redis
from redis.exceptions import RedisError

from ingress.console.state import ConsoleOptions
from services import deferrals, queue_stats, queue_traffic, webhook_answers
from services.deferrals import Deferrals
from services.queue_stats import QueueDepth
from services.webhook_answers import WebhookAnswers

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QueueLine:
    depth: QueueDepth
    rate_in: float | None  # messages per second; None: unknown
    rate_out: float | None
    rates_from: Literal["broker", "fleet", "none"]


def queue_lines(redis: Redis, options: ConsoleOptions) -> tuple[list[QueueLine], str | None]:
    """Each queue's depth and rates; the error that kept the depths from being read, if any."""
    if not options.rabbitmq_url:
        return [], None
    try:
        # No peek at head messages: the console only reads, it never touches a queue.
        depths = queue_stats.queue_depths(
            options.rabbitmq_url,
            options.queues,
            management_url=options.management_url,
            peek_oldest=False,
            timeout=2.0,
        )
    except queue_stats.QueueStatsError as exc:
        return [], str(exc)
    counted: dict[str, queue_traffic.QueueRate] = {}
    if any(d.rate_in is None or d.rate_out is None for d in depths):
        try:
            counted = queue_traffic.queue_rates(redis, options.queues, options.counters_namespace)
        except RedisError as exc:
            log.warning("queue rates unavailable", extra={"error": repr(exc)})
    lines = []
    for depth in depths:
        if depth.rate_in is not None and depth.rate_out is not None:
            lines.append(QueueLine(depth, depth.rate_in, depth.rate_out, "broker"))
        elif depth.queue in counted:
            rate = counted[depth.queue]
            lines.append(QueueLine(depth, rate.rate_in, rate.rate_out, "fleet"))
        else:
            lines.append(QueueLine(depth, None, None, "none"))
    return lines, None


def answers(redis: Redis, options: ConsoleOptions) -> WebhookAnswers | None:
    try:
        return webhook_answers.answers(redis, options.counters_namespace)
    except RedisError as exc:
        log.warning("webhook answers unavailable", extra={"error": repr(exc)})
        return None


def number_deferrals(
    redis: Redis, options: ConsoleOptions, phone_number_ids: Iterable[str]
) -> dict[str, Deferrals] | None:
    try:
        return deferrals.pacing_deferrals(redis, phone_number_ids, options.counters_namespace)
    except RedisError as exc:
        log.warning("pacing deferrals unavailable", extra={"error": repr(exc)})
        return None
