"""The Dramatiq broker: RabbitMQ with publisher confirms, bounded retries, dead-letter rows.

`setup_broker()` must run before any actor module is imported (actors bind to the global broker
at import; otherwise Dramatiq silently builds a default localhost one).
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import AgeLimit, CurrentMessage, ShutdownNotifications, TimeLimit

from config import Settings, get_settings
from services import fleet_counters
from services.queue_traffic import QueueTraffic
from services.telemetry.dramatiq_context import TraceContext
from workers.consumer import GatheredAckRabbitmqBroker
from workers.deadletters import DeadLetterRecorder
from workers.encoder import OrjsonDecodingEncoder
from workers.metrics import GroupPrometheus, QueueWait
from workers.resources import ResourcesMiddleware
from workers.retries import FleetRetries

# Retried and delayed messages sit unacked in worker memory until due; RabbitMQ's consumer timeout
# (30 min by default) would requeue them and start a poison loop, so waits stay well below it.
MIN_BACKOFF_MS = 1_000
MAX_BACKOFF_MS = 10 * 60 * 1_000
MAX_RETRIES = 12
TIME_LIMIT_MS = 5 * 60 * 1_000
OUTAGE_MAX_BACKOFF_MS = 60 * 1_000


def build_broker(settings: Settings | None = None) -> RabbitmqBroker:
    settings = settings or get_settings()
    # Dramatiq's exposition only works in processes its CLI booted with a multiprocess directory
    # (workers/run.py sets one up); elsewhere (the scheduler, in-process tests) it would only fail.
    metrics = [GroupPrometheus()] if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else []
    middleware = [
        *metrics,
        QueueWait(),
        # Messages in and out of each queue, written to Redis for the console's rates.
        QueueTraffic(fleet_counters.shared(settings.redis_url, settings.fleet_counters_namespace)),
        TraceContext(),
        AgeLimit(),
        TimeLimit(time_limit=TIME_LIMIT_MS),
        ShutdownNotifications(),
        # No Callbacks or Pipelines: no actor chains another, and Pipelines alone imported a
        # module on every message processed.
        CurrentMessage(),
        # Dramatiq runs after_* hooks in reverse order: the recorder must sit before Retries so it
        # sees the message after Retries has decided whether it failed for good.
        DeadLetterRecorder(),
        # Retries that never ack a message whose re-enqueue failed, and that hold a job through an
        # outage of Postgres, RabbitMQ or Redis without spending its budget (workers/retries.py).
        FleetRetries(
            max_retries=MAX_RETRIES,
            min_backoff=MIN_BACKOFF_MS,
            max_backoff=MAX_BACKOFF_MS,
            outage_max_backoff=OUTAGE_MAX_BACKOFF_MS,
            outage_hold=settings.dead_letter_outage_hold_seconds,
        ),
        ResourcesMiddleware(),
    ]
    return GatheredAckRabbitmqBroker(url=settings.rabbitmq_url, confirm_delivery=True, middleware=middleware)


def setup_broker(settings: Settings | None = None) -> RabbitmqBroker:
    broker = build_broker(settings)
    dramatiq.set_encoder(OrjsonDecodingEncoder())
    dramatiq.set_broker(broker)
    return broker
