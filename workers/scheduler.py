"""The scheduler process: periodic sweeps that repair what a crash or an outage left behind.

Stateless: run one or several; each sweep locks what it takes (`FOR UPDATE SKIP LOCKED`), so two
schedulers never publish the same outbox row at once. Stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from config import get_settings
from config.logging import configure_logging
from db import outbox
from db.uow import UnitOfWork
from services import bulk_run
from workers import deadletter_tasks as dead_letters
from workers import resources
from workers.broker import setup_broker
from workers.bulk import metrics as bulk_metrics
from workers.outbound import sweeps as outbound

log = logging.getLogger("adsapp.scheduler")

OUTBOX_GRACE_SECONDS = 30.0
OUTBOX_BATCH = 500


@dataclass
class PeriodicTask:
    name: str
    interval_seconds: float
    run: Callable[[resources.Resources], int]
    next_at: float = field(default=0.0)


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
    PeriodicTask("template-sync", 6 * 3600.0, outbound.sync_templates),
    PeriodicTask("dead-letter-redrives", 1.0, dead_letters.run_redrives),
    PeriodicTask("dead-letter-sweep", 30.0, dead_letters.sweep_transient),
    PeriodicTask("dead-letter-prune", 3600.0, dead_letters.prune),
    PeriodicTask("dead-letter-gauges", 30.0, dead_letters.set_gauges),
    PeriodicTask("bulk-stale-chunks", 15.0, sweep_bulk_chunks),
    PeriodicTask("bulk-items-gauge", 15.0, gauge_bulk_items),
]


def run(stop: threading.Event, tasks: list[PeriodicTask], res: resources.Resources) -> None:
    while not stop.is_set():
        now = time.monotonic()
        for task in tasks:
            if now < task.next_at:
                continue
            try:
                done = task.run(res)
                if done:
                    log.info("sweep done", extra={"task": task.name, "count": done})
            except Exception:
                log.exception("sweep failed", extra={"task": task.name})
            task.next_at = time.monotonic() + task.interval_seconds
        next_due = min(t.next_at for t in tasks) if tasks else time.monotonic() + 1.0
        stop.wait(max(0.05, next_due - time.monotonic()))


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    broker = setup_broker(settings)
    res = resources.build(broker, settings)
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signum})
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("scheduler started", extra={"tasks": [t.name for t in TASKS]})
    try:
        run(stop, TASKS, res)
    finally:
        res.close()
        broker.close()


if __name__ == "__main__":
    main()
