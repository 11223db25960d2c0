"""A whole delivery: every change routed to its tenant and handled in a transaction of its own;
a change no tenant can take (yet) is parked (see `parking`).

A change commits on its own, so a crash leaves each change either fully stored or not at all; the
redelivered message then skips what was committed (wamid, status and event keys) and completes the
rest. Follow-ups happen only after a commit: media jobs through the outbox, live updates on Redis.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from db.uow import UnitOfWork
from domain.ports import JobPublisher
from domain.whatsapp import Delivery, ParkReason, WebhookChange
from services.number_routes import Route, RouteCache
from workers.inbound import metrics, parking
from workers.inbound.handler import Outcome, handle_change
from workers.inbound.realtime import RedisRealtime, channel_for


@dataclass(frozen=True, slots=True)
class Deps:
    engine: Engine
    jobs: JobPublisher
    routes: RouteCache
    realtime: RedisRealtime | None


def process_delivery(delivery: Delivery, received_at: float, deps: Deps) -> list[Outcome]:
    """Each change on its own: one that cannot be stored in an inbox is parked, never in the way."""
    for item in delivery.unparsed:
        parking.park_unparsed(deps.engine, item, received_at)
    outcomes: list[Outcome] = []
    for change in delivery.changes:
        route = deps.routes.for_change(change)
        if route is None:
            route = parking.park_unowned(deps.engine, deps.routes, change, received_at)
            if route is None:
                continue
        try:
            outcome = _store(change, route, received_at, deps)
        except sa_exc.DataError as exc:
            # Values its tenant's schema refuses (out of range, ...): retrying cannot help, and the
            # other changes of the delivery must not wait behind it.
            parking.park_unusable(
                deps.engine,
                change.raw,
                ParkReason.UNSTORABLE,
                str(exc.orig),
                received_at,
                entry_id=change.entry_id,
                phone_number_id=change.phone_number_id,
                field=change.field,
            )
            continue
        committed_at = time.time()
        metrics.COMMIT_LATENCY.observe(max(0.0, committed_at - received_at))
        _count(outcome, change)
        _observe_status_lag(outcome, change, committed_at)
        outcomes.append(outcome)
    return outcomes


def _store(change: WebhookChange, route: Route, received_at: float, deps: Deps) -> Outcome:
    with UnitOfWork(
        deps.engine, organization_id=route.organization_id, publisher=deps.jobs, generic_plans=True
    ) as uow:
        outcome = handle_change(uow, change, route, received_at)
        if deps.realtime is not None and outcome.realtime:
            uow.after_commit(_publisher(deps.realtime, channel_for(route.organization_id), outcome))
        uow.commit()
    return outcome


def _publisher(realtime: RedisRealtime, channel: str, outcome: Outcome) -> Callable[[], None]:
    return lambda: realtime.publish_many(channel, outcome.realtime)


def _observe_status_lag(outcome: Outcome, change: WebhookChange, committed_at: float) -> None:
    """Only statuses stored for the first time: a redelivery days later is Meta retrying, not lag."""
    new = {(wamid, status) for _id, wamid, status, _message in outcome.statuses.events}
    for s in change.statuses:
        if (s.wamid, s.status) in new:
            metrics.STATUS_LAG.observe(max(0.0, committed_at - s.timestamp))


def _count(outcome: Outcome, change: WebhookChange) -> None:
    for item in change.unparsed:
        metrics.UNPARSEABLE.labels(item.kind).inc()
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
    if not change.is_messages:
        metrics.ACCOUNT_EVENTS.labels(change.field).inc()
