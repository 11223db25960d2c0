"""A whole delivery: every change routed to its tenant and handled in a transaction of its own.

A change commits on its own, so a crash leaves each change either fully stored or not at all; the
redelivered message then skips what was committed (wamid, status and event keys) and completes the
rest. Follow-ups happen only after a commit: media jobs through the outbox, live updates on Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from db.uow import UnitOfWork
from domain.ports import JobPublisher
from domain.whatsapp import Delivery
from workers.inbound import metrics
from workers.inbound.handler import Outcome, handle_change
from workers.inbound.realtime import RedisRealtime, channel_for
from workers.inbound.routes import RouteCache

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Deps:
    engine: Engine
    jobs: JobPublisher
    routes: RouteCache
    realtime: RedisRealtime | None


def process_delivery(delivery: Delivery, received_at: float, deps: Deps) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for change in delivery.changes:
        route = deps.routes.for_change(change)
        if route is None:
            metrics.UNKNOWN_TENANTS.labels(change.field).inc()
            log.warning(
                "change for a number no organization owns; not stored",
                extra={
                    "field": change.field,
                    "phone_number_id": change.phone_number_id,
                    "entry_id": change.entry_id,
                    "messages": len(change.messages),
                    "statuses": len(change.statuses),
                },
            )
            continue
        with UnitOfWork(
            deps.engine, organization_id=route.organization_id, publisher=deps.jobs, generic_plans=True
        ) as uow:
            outcome = handle_change(uow, change, route, received_at)
            if deps.realtime is not None and outcome.realtime:
                uow.after_commit(_publisher(deps.realtime, channel_for(route.organization_id), outcome))
            uow.commit()
        metrics.COMMIT_LATENCY.observe(max(0.0, time.time() - received_at))
        _count(outcome, change.field)
        outcomes.append(outcome)
    return outcomes


def _publisher(realtime: RedisRealtime, channel: str, outcome: Outcome) -> Callable[[], None]:
    return lambda: realtime.publish_many(channel, outcome.realtime)


def _count(outcome: Outcome, field: str) -> None:
    for stored in outcome.stored:
        metrics.MESSAGES_STORED.labels(metrics.type_label(stored.message.type)).inc()
    if outcome.duplicates:
        metrics.DUPLICATES_SKIPPED.inc(outcome.duplicates)
    statuses = outcome.statuses
    counts = {
        "applied": statuses.applied,
        "stale": statuses.stale,
        "pending": statuses.pending,
        "reconciled": statuses.reconciled,
    }
    for result, n in counts.items():
        if n:
            metrics.STATUSES.labels(result).inc(n)
    if field != "messages":
        metrics.ACCOUNT_EVENTS.labels(field).inc()
