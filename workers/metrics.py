"""Worker-side metrics plumbing: the group's exposition process and the time-in-queue histogram.

Dramatiq's Prometheus middleware forks one exposition process per `dramatiq` command. Ours serves
the same multiprocess directory, with the domain metrics of every worker process in it, but prunes
the files of worker processes that died (Dramatiq's own exposition never does) and binds the
internal host from `dramatiq_prom_host` (Dramatiq defaults to 0.0.0.0).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name
from dramatiq.middleware.prometheus import Prometheus
from prometheus_client import Histogram

from services.telemetry.exposition import MULTIPROC_ENV, MetricsServer, group_registry

QUEUE_WAIT_SECONDS = Histogram(
    "adsapp_queue_wait_seconds",
    "Time a message waited in its queue: from enqueue (or its delay's end) to a worker taking it",
    ["queue"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)


def serve_group_metrics() -> int:
    """The exposition process's body: blocks serving /metrics until the group stops it."""
    directory = Path(os.environ[MULTIPROC_ENV])
    host = os.environ.get("dramatiq_prom_host", "127.0.0.1")  # noqa: SIM112  (Dramatiq's own names)
    port = int(os.environ.get("dramatiq_prom_port", "9191"))  # noqa: SIM112
    MetricsServer(group_registry(directory), host, port).serve_forever()
    return 0


MESSAGE_SECONDS = Histogram(
    "dramatiq_message_duration_seconds",
    "The time spent processing messages.",
    ["queue_name", "actor_name"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)


@dataclass(frozen=True, slots=True)
class _ActorMetrics:
    """One queue and actor's children of the middleware's metrics, looked up once."""

    inprogress: Any
    delayed: Any
    seconds: Any
    total: Any
    errored: Any


class GroupPrometheus(Prometheus):
    """Dramatiq's middleware metrics, exposed by `serve_group_metrics` instead of Dramatiq's server,
    with the processing time in seconds (`dramatiq_message_duration_seconds`) instead of milliseconds.

    Each queue and actor's labelled children are looked up once: `labels()` takes a lock and builds
    a key on every call, five times a message, which was a fifth of a worker thread's time."""

    def __init__(self) -> None:
        super().__init__()
        self._started: dict[str, float] = {}
        self._metrics: dict[tuple[str, str], _ActorMetrics] = {}

    @property
    def forks(self) -> list[Callable[[], int]]:
        return [serve_group_metrics]

    def _of(self, message: MessageProxy) -> _ActorMetrics:
        labels = (message.queue_name, message.actor_name)
        found = self._metrics.get(labels)
        if found is None:
            found = self._metrics[labels] = _ActorMetrics(
                inprogress=self.inprogress_messages.labels(*labels),
                delayed=self.inprogress_delayed_messages.labels(*labels),
                seconds=MESSAGE_SECONDS.labels(*labels),
                total=self.total_messages.labels(*labels),
                errored=self.total_errored_messages.labels(*labels),
            )
        return found

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        # Dramatiq's own bookkeeping, with the children looked up once.
        metrics = self._of(message)
        if message.message_id in self.delayed_messages:
            self.delayed_messages.discard(message.message_id)
            metrics.delayed.dec()
        metrics.inprogress.inc()
        self._started[message.message_id] = time.perf_counter()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        # Dramatiq's own bookkeeping, less its milliseconds histogram.
        metrics = self._of(message)
        started = self._started.pop(message.message_id, None)
        if started is not None:
            metrics.seconds.observe(time.perf_counter() - started)
        metrics.inprogress.dec()
        metrics.total.inc()
        if exception is not None:
            metrics.errored.inc()

    after_skip_message = after_process_message


class QueueWait(dramatiq.Middleware):
    """Observes `adsapp_queue_wait_seconds` as each message is taken for processing."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._children: dict[str, Any] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        # A delayed or retried message keeps its first enqueue time; its wait starts at its eta.
        since_ms = max(message.message_timestamp, message.options.get("eta") or 0)
        queue = q_name(message.queue_name)
        child = self._children.get(queue)
        if child is None:
            child = self._children[queue] = QUEUE_WAIT_SECONDS.labels(queue)
        child.observe(max(0.0, self._clock() - since_ms / 1000.0))
