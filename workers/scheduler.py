"""The scheduler process: periodic sweeps that repair what a crash or an outage left behind.

Stateless: run one or several; each sweep locks what it takes (`FOR UPDATE SKIP LOCKED`), so two
schedulers never publish the same outbox row at once. Stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import FrameType

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from config import get_settings
from config.logging import configure_logging
from db import outbox
from db.uow import UnitOfWork
from services import bulk_run
from services.telemetry import tracing
from services.telemetry.exposition import MetricsServer
from workers import deadletter_tasks as dead_letters
from workers import resources
from workers.broker import setup_broker
from workers.bulk import metrics as bulk_metrics
from workers.fleet_gauges import FleetGauges
from workers.inbound import parking
from workers.outbound import sweeps as outbound
from workers.run import GROUPS
from workers.scheduler_metrics import observe_sweep

log = logging.getLogger("adsapp.scheduler")

OUTBOX_GRACE_SECONDS = 30.0
OUTBOX_BATCH = 500


# A sweep that failed (the database or the Graph API not up yet, a restart) runs again this soon
# rather than a whole interval later: the first template sync must not wait six hours.
RETRY_AFTER_FAILURE_SECONDS = 30.0


# Tasks that wait on the Graph API run in a lane (thread) of their own: a template sync pages
# through every organization's accounts, minutes with thousands of tenants or while the Graph API
# refuses, and the database sweeps (the outbox every 5 s, dead-letter redrives every second) must
# keep their pace meanwhile.
SWEEPS_LANE = "sweeps"
GRAPH_LANE = "graph"
# At a stop, how long a lane still busy with a task is waited for. Every task is idempotent and
# commits per batch or organization, so one cut off by the exit is simply run again next time.
STOP_GRACE_SECONDS = 5.0


@dataclass
class PeriodicTask:
    name: str
    interval_seconds: float
    run: Callable[[resources.Resources], int]
    next_at: float = field(default=0.0)
    retry_seconds: float = RETRY_AFTER_FAILURE_SECONDS
    lane: str = SWEEPS_LANE

    def delay_after(self, ok: bool) -> float:
        """Seconds until the next run: the interval, or after a failure the shorter retry wait."""
        return self.interval_seconds if ok else min(self.interval_seconds, self.retry_seconds)


def sweep_outbox(res: resources.Resources) -> int:
    """Publish outbox rows older than the grace period (their unit of work died before publishing)."""
    with UnitOfWork(res.engine, system=True) as uow:
        claimed = outbox.claim_stale(uow.conn, OUTBOX_GRACE_SECONDS, OUTBOX_BATCH)
        for _, job in claimed:
            res.jobs.publish(job)
        if claimed:
            outbox.remove(uow.conn, [row_id for row_id, _ in claimed])
        uow.commit()
    return len(claimed)


def sweep_parked_changes(res: resources.Resources) -> int:
    """Replay parked changes whose number is owned now, and expire those past the retention."""
    retention = res.settings.parked_changes_retention_days * 86_400
    return parking.sweep(res.engine, res.jobs, retention)


# A released chunk's run or settle job re-arms itself within seconds; one untouched this long was
# lost with its worker (or waits in the outbox) and is enqueued again, harmlessly if it was not.
BULK_STALE_SECONDS = 60.0


def sweep_bulk_chunks(res: resources.Resources) -> int:
    return bulk_run.sweep_stale_chunks(bulk_run.RunPorts(res.engine, res.jobs), BULK_STALE_SECONDS)


def gauge_bulk_items(res: resources.Resources) -> int:
    bulk_metrics.ITEMS_PENDING.set(bulk_run.items_pending(res.engine))
    return 0


# Later sweeps (dead-letter retries, stale bulk jobs, template sync) register here.
TASKS: list[PeriodicTask] = [
    PeriodicTask("outbox", 5.0, sweep_outbox),
    PeriodicTask("outbound-stuck-sending", 30.0, outbound.expire_stuck_sending),
    PeriodicTask("outbound-orphaned-queued", 300.0, outbound.requeue_orphaned),
    PeriodicTask("template-sync", 6 * 3600.0, outbound.sync_templates, lane=GRAPH_LANE),
    PeriodicTask("inbound-parked-changes", 60.0, sweep_parked_changes),
    PeriodicTask("bulk-stale-chunks", 15.0, sweep_bulk_chunks),
    PeriodicTask("bulk-items-gauge", 15.0, gauge_bulk_items),
    PeriodicTask("dead-letter-redrives", 1.0, dead_letters.run_redrives),
    PeriodicTask("dead-letter-sweep", 30.0, dead_letters.sweep_transient),
    PeriodicTask("dead-letter-prune", 3600.0, dead_letters.prune),
    PeriodicTask("dead-letter-gauges", 30.0, dead_letters.set_gauges),
]


def run(stop: threading.Event, tasks: list[PeriodicTask], res: resources.Resources) -> None:
    """Run `tasks` until `stop` is set: each lane's tasks one after another on a thread of the lane's,
    so a slow task delays only its own lane."""
    lanes: dict[str, list[PeriodicTask]] = {}
    for task in tasks:
        lanes.setdefault(task.lane, []).append(task)
    threads = [
        threading.Thread(target=_run_lane, args=(stop, lane, res), name=f"lane-{name}", daemon=True)
        for name, lane in lanes.items()
    ]
    for thread in threads:
        thread.start()
    stop.wait()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("stopping with a task still running", extra={"lane": thread.name})


def _run_lane(stop: threading.Event, tasks: list[PeriodicTask], res: resources.Resources) -> None:
    while not stop.is_set():
        now = time.monotonic()
        for task in tasks:
            if now < task.next_at:
                continue
            ok = True
            try:
                done = task.run(res)
                if done:
                    log.info("sweep done", extra={"task": task.name, "count": done})
                observe_sweep(task.name, ok=True, count=done)
            except Exception:
                ok = False
                log.exception("sweep failed", extra={"task": task.name, "retry_in": task.delay_after(False)})
                observe_sweep(task.name, ok=False, count=0)
            task.next_at = time.monotonic() + task.delay_after(ok)
        next_due = min(t.next_at for t in tasks) if tasks else time.monotonic() + 1.0
        stop.wait(max(0.05, next_due - time.monotonic()))


class _Default(Collector):
    """The default registry's metrics, served beside the fleet gauges."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    traced = tracing.configure_tracing(
        settings.otel_service_name or "adsapp-scheduler", settings.otel_exporter_otlp_endpoint
    )
    broker = setup_broker(settings)
    res = resources.build(broker, settings)
    stop = res.stopping
    gauges = FleetGauges(sorted({queue for group in GROUPS.values() for queue in group.queues}))
    tasks = [*TASKS, PeriodicTask("fleet-gauges", settings.fleet_gauges_interval_seconds, gauges.refresh)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(gauges)
    # The default registry holds this process's own counters (sweeps, and the sweeps' own metrics).
    registry.register(_Default())
    metrics = MetricsServer(registry, settings.metrics_host, settings.scheduler_metrics_port).start()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signum})
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("scheduler started", extra={"tasks": [t.name for t in tasks], "metrics_port": metrics.port})
    try:
        run(stop, tasks, res)
    finally:
        metrics.close()
        if traced is not None:
            traced.shutdown()
        res.close()
        broker.close()


if __name__ == "__main__":
    main()
