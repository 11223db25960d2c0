"""Fleet gauges, from one place (the scheduler): queue depths, the outbox, stuck sends, breakers.

prometheus_client's custom collectors do not work in multiprocess mode, and one number per fleet
must not be summed over processes anyway, so the scheduler (one process, its own registry) reads
RabbitMQ, Postgres and Redis every `FLEET_GAUGES_INTERVAL_SECONDS` and serves the last snapshot.
A source that cannot be read leaves its gauges out of the snapshot (a gap, not a stale value) and
counts `adsapp_fleet_gauge_errors_total{source}`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from db import fleet_stats
from db.uow import UnitOfWork
from services.breaker_stats import HALF_OPEN, OPEN, breaker_states
from services.queue_stats import QueueDepth, QueueStatsError, queue_depths
from workers import resources

log = logging.getLogger(__name__)

GAUGE_ERRORS = Counter(
    "adsapp_fleet_gauge_errors_total", "Fleet gauge refreshes that could not read a source", ["source"]
)


@dataclass
class Snapshot:
    queues: list[QueueDepth] = field(default_factory=list)
    outbox: fleet_stats.Backlog | None = None
    stuck_sending: int | None = None
    breakers: dict[str, int] | None = None  # state -> count
    taken_at: float = 0.0


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class FleetGauges(Collector):
    def __init__(self, queues: Sequence[str]) -> None:
        self.queues = tuple(queues)
        self.snapshot = Snapshot()

    def refresh(self, res: resources.Resources) -> int:
        """Read every source once; the scheduler calls this as a periodic task."""
        snap = Snapshot(taken_at=time.time())
        settings = res.settings
        try:
            snap.queues = queue_depths(
                settings.rabbitmq_url, self.queues, management_url=settings.rabbitmq_management_url
            )
        except QueueStatsError:
            GAUGE_ERRORS.labels("rabbitmq").inc()
            log.warning("fleet gauges: rabbitmq unreadable", exc_info=True)
        try:
            with UnitOfWork(res.engine, system=True) as uow:
                snap.outbox = fleet_stats.outbox_backlog(uow.conn)
                snap.stuck_sending = fleet_stats.stuck_sending(uow.conn, res.graph.options.send_lease_seconds)
        except Exception:
            GAUGE_ERRORS.labels("postgres").inc()
            log.warning("fleet gauges: postgres unreadable", exc_info=True)
        try:
            namespace = f"{res.graph.options.redis_namespace}:graph:breaker"
            counts = {OPEN: 0, HALF_OPEN: 0}
            for breaker in breaker_states(res.redis, namespace):
                if breaker.state in counts:
                    counts[breaker.state] += 1
            snap.breakers = counts
        except Exception:
            GAUGE_ERRORS.labels("redis").inc()
            log.warning("fleet gauges: redis unreadable", exc_info=True)
        self.snapshot = snap
        return 0  # nothing "done" to log at each refresh

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot
        if snap.taken_at:
            refreshed = _gauge(
                "adsapp_fleet_gauges_refreshed_timestamp_seconds", "When the fleet gauges were read"
            )
            refreshed.add_metric([], snap.taken_at)
            yield refreshed
        if snap.queues:
            yield from _queue_metrics(snap.queues)
        if snap.outbox is not None:
            rows = _gauge("adsapp_outbox_rows", "Outbox rows not yet published")
            rows.add_metric([], snap.outbox.rows)
            yield rows
            oldest = _gauge(
                "adsapp_outbox_oldest_age_seconds", "Oldest unpublished outbox row, age (0 if none)"
            )
            oldest.add_metric([], snap.outbox.oldest_age_seconds or 0.0)
            yield oldest
        if snap.stuck_sending is not None:
            stuck = _gauge(
                "adsapp_outbound_stuck_sending",
                "Messages in `sending` past the send lease",
            )
            stuck.add_metric([], snap.stuck_sending)
            yield stuck
        if snap.breakers is not None:
            breakers = _gauge(
                "adsapp_graph_breakers", "Graph API circuit breakers by state (open, half-open)", ["state"]
            )
            for state, count in sorted(snap.breakers.items()):
                breakers.add_metric([state], count)
            yield breakers


def _queue_metrics(depths: Sequence[QueueDepth]) -> Iterable[Metric]:
    ready = _gauge("adsapp_queue_messages_ready", "Messages ready in a queue", ["queue"])
    delayed = _gauge("adsapp_queue_messages_delayed", "Messages in a queue's delay queue (.DQ)", ["queue"])
    dead = _gauge("adsapp_queue_messages_dead", "Messages in a queue's dead-letter queue (.XQ)", ["queue"])
    consumers = _gauge("adsapp_queue_consumers", "Consumers of a queue", ["queue"])
    unacked = _gauge(
        "adsapp_queue_messages_unacked",
        "Messages delivered and not yet acknowledged (only with RABBITMQ_MANAGEMENT_URL)",
        ["queue"],
    )
    age = _gauge(
        "adsapp_queue_oldest_ready_age_seconds",
        "Oldest ready message of a queue, age (0 if empty)",
        ["queue"],
    )
    for depth in depths:
        if not depth.exists:
            continue
        labels = [depth.queue]
        ready.add_metric(labels, depth.ready)
        delayed.add_metric(labels, depth.delayed)
        dead.add_metric(labels, depth.dead)
        consumers.add_metric(labels, depth.consumers)
        if depth.unacked is not None:
            unacked.add_metric(labels, depth.unacked)
        # Empty: 0. Not Dramatiq's or consumed meanwhile: left out rather than guessed.
        if depth.ready == 0:
            age.add_metric(labels, 0.0)
        elif depth.oldest_ready_age_seconds is not None:
            age.add_metric(labels, depth.oldest_ready_age_seconds)
    yield from (ready, delayed, dead, consumers, unacked, age)
