"""The scheduler's dead-letter tasks: run redrive tasks, sweep transient letters, republish retries
left unconfirmed, prune past retention, and set the dead-letter gauges."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pika
import pika.exceptions

from db.repos import deadletters as repo
from domain import jobs
from services import redrive
from services.deadletter_metrics import CURRENT, OLDEST_AGE, XQ_DEPTH
from services.deadletters import unit_of_work
from workers import resources

log = logging.getLogger(__name__)

KNOWN_QUEUES = (
    jobs.INBOUND_QUEUE, jobs.MEDIA_QUEUE, jobs.OUTBOUND_QUEUE, jobs.BILLING_QUEUE,
)  # fmt: skip
REDRIVE_SLICE_SECONDS = 4.0


def run_redrives(res: resources.Resources) -> int:
    return redrive.run_redrives(res.engine, res.jobs, REDRIVE_SLICE_SECONDS)


def sweep_transient(res: resources.Resources) -> int:
    return redrive.sweep_transient(res.engine, res.jobs) + redrive.republish_stale(res.engine, res.jobs)


def prune(res: resources.Resources) -> int:
    return redrive.prune(res.engine, timedelta(days=res.settings.dead_letter_retention_days))


def xq_depths(amqp_url: str, queues: set[str]) -> dict[str, int]:
    """Ready messages in each `<queue>.XQ` (passive declares: nothing is created or consumed)."""
    depths: dict[str, int] = {}
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        for queue in sorted(queues):
            try:
                depths[queue] = int(channel.queue_declare(f"{queue}.XQ", passive=True).method.message_count)
            except pika.exceptions.ChannelClosedByBroker:
                depths[queue] = 0  # never declared: nothing has died there
                channel = connection.channel()
    finally:
        connection.close()
    return depths


def set_gauges(res: resources.Resources) -> int:
    with unit_of_work(res.engine, redrive.OPERATOR) as uow:
        groups = repo.depth_by_group(uow.conn)
    CURRENT.clear()
    oldest: datetime | None = None
    for g in groups:
        CURRENT.labels(g["queue"], g["actor"], g["error_class"] or "").set(int(g["n"]))
        if oldest is None or g["oldest"] < oldest:
            oldest = g["oldest"]
    OLDEST_AGE.set((datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0)
    queues = set(KNOWN_QUEUES) | {g["queue"] for g in groups}
    started = time.monotonic()
    try:
        for queue, depth in xq_depths(res.settings.rabbitmq_url, queues).items():
            XQ_DEPTH.labels(queue).set(depth)
    except pika.exceptions.AMQPError:
        log.warning("could not read .XQ depths", exc_info=True, extra={"seconds": time.monotonic() - started})
    return 0
