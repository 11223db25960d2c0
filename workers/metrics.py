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


class GroupPrometheus(Prometheus):
    """Dramatiq's middleware metrics, exposed by `serve_group_metrics` instead of Dramatiq's server,
    with the processing time in seconds (`dramatiq_message_duration_seconds`) instead of milliseconds."""

    def __init__(self) -> None:
        super().__init__()
        self._started: dict[str, float] = {}

    @property
    def forks(self) -> list[Callable[[], int]]:
        return [serve_group_metrics]

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        super().before_process_message(broker, message)  # type: ignore[no-untyped-call]
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
        labels = (message.queue_name, message.actor_name)
        self.message_start_times.pop(message.message_id, None)
        started = self._started.pop(message.message_id, None)
        if started is not None:
            MESSAGE_SECONDS.labels(*labels).observe(time.perf_counter() - started)
        self.inprogress_messages.labels(*labels).dec()
        self.total_messages.labels(*labels).inc()
        if exception is not None:
            self.total_errored_messages.labels(*labels).inc()

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
