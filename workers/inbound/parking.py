"""Changes no tenant can take yet: parked raw, replayed when their number is added, expired after
the retention.

A change for a number nobody owns is parked under the number's lock after reading the route once
more, and a replay claims a number's changes under the same lock, so no change slips between
"not owned" and "added". A replay hands each change back to the inbound queue as a delivery of its
own, through the outbox in the transaction that removes it from the park: processed like any
delivery (deduplicated by wamid), never lost between the two.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

import orjson
from sqlalchemy.engine import Engine

from db.repos import parked
from db.uow import UnitOfWork
from domain import jobs
from domain.ports import Job, JobPublisher
from domain.whatsapp import ParkReason, Unparsed, WebhookChange
from domain.whatsapp.parse import WHATSAPP_OBJECT
from services.number_routes import Route, RouteCache
from workers.inbound import metrics

log = logging.getLogger(__name__)

REPLAY_BATCH = 500


def park_unowned(
    engine: Engine, routes: RouteCache, change: WebhookChange, received_at: float
) -> Route | None:
    """Park a change whose number (or account) no organization owns; the route if one owns it now."""
    with UnitOfWork(engine, system=True) as uow:
        parked.lock(uow.conn, *_keys(change.phone_number_id, change.entry_id))
        # Read after the lock is held (on a connection of the application role, which alone may
        # route): a replay claiming this number either ran before and the number is visible, or
        # waits for this park to commit and then claims it.
        route = routes.refresh(change)
        if route is not None:
            return route
        metrics.UNKNOWN_TENANTS.labels(change.field).inc()
        new = parked.park(
            uow.conn,
            digest=_digest(change.entry_id, change.raw),
            phone_number_id=change.phone_number_id,
            waba_id=change.entry_id,
            field=change.field,
            change=change.raw,
            reason=ParkReason.UNKNOWN_NUMBER,
            detail=f"no organization owns {'this number' if change.phone_number_id else 'this account'}",
            received_at=_at(received_at),
        )
        uow.commit()
    _parked(new, ParkReason.UNKNOWN_NUMBER, change.phone_number_id, change.entry_id)
    return None


def park_unusable(
    engine: Engine,
    raw: object,
    reason: ParkReason,
    detail: str,
    received_at: float,
    *,
    entry_id: str = "",
    phone_number_id: str | None = None,
    field: str | None = None,
) -> None:
    """Keep a change that cannot be stored in any inbox (unreadable, or refused by the database)."""
    with UnitOfWork(engine, system=True) as uow:
        new = parked.park(
            uow.conn,
            digest=_digest(entry_id, raw),
            phone_number_id=phone_number_id,
            waba_id=entry_id,
            field=field,
            change=raw,
            reason=reason,
            detail=detail[:2000],
            received_at=_at(received_at),
        )
        uow.commit()
    _parked(new, reason, phone_number_id, entry_id, detail)


def park_unparsed(engine: Engine, item: Unparsed, received_at: float) -> None:
    metrics.UNPARSEABLE.labels(item.kind).inc()
    field = item.raw.get("field") if isinstance(item.raw, dict) else None
    park_unusable(
        engine,
        item.raw,
        ParkReason.UNPARSEABLE,
        item.reason,
        received_at,
        entry_id=item.entry_id,
        phone_number_id=item.phone_number_id,
        field=field if isinstance(field, str) else None,
    )


def replay(engine: Engine, publisher: JobPublisher, phone_number_id: str | None, waba_id: str | None) -> int:
    """Hand every change parked for this number (or account) back to the inbound queue."""
    replayed = 0
    while True:
        with UnitOfWork(engine, system=True, publisher=publisher) as uow:
            # Both locks: a number's replay also takes its account's changes that name no number.
            parked.lock(uow.conn, *_keys(phone_number_id, None), *_keys(None, waba_id))
            claimed = parked.claim_for(uow.conn, phone_number_id, waba_id, REPLAY_BATCH)
            for row in claimed:
                uow.enqueue(_delivery_job(row))
            if claimed:
                parked.remove(uow.conn, [row.id for row in claimed])
            uow.commit()
        replayed += len(claimed)
        metrics.PARKED_REPLAYED.inc(len(claimed))
        if len(claimed) < REPLAY_BATCH:
            break
    if replayed:
        log.info(
            "parked changes replayed",
            extra={"phone_number_id": phone_number_id, "waba_id": waba_id, "count": replayed},
        )
    return replayed


def sweep(engine: Engine, publisher: JobPublisher, retention_seconds: float) -> int:
    """Replay what some path added a number for without asking, and expire what waited too long."""
    done = 0
    with UnitOfWork(engine, system=True) as uow:
        owned = parked.now_owned(uow.conn, REPLAY_BATCH)
    for phone_number_id, waba_id in owned:
        done += replay(engine, publisher, phone_number_id, None if phone_number_id else waba_id)
    with UnitOfWork(engine, system=True) as uow:
        expired = parked.expire(uow.conn, retention_seconds)
        uow.commit()
    for reason, count in expired.items():
        metrics.PARKED_EXPIRED.labels(reason).inc(count)
    return done + sum(expired.values())


def _delivery_job(row: parked.ParkedChange) -> Job:
    document = {"object": WHATSAPP_OBJECT, "entry": [{"id": row.waba_id or "", "changes": [row.change]}]}
    return Job(
        queue=jobs.INBOUND_QUEUE,
        actor=jobs.WHATSAPP_DELIVERY_ACTOR,
        args=(orjson.dumps(document).decode(),),
        kwargs={"received_at": row.received_at.timestamp(), "request_id": f"parked-{row.id}"},
    )


def _parked(
    new: bool, reason: ParkReason, phone_number_id: str | None, entry_id: str, detail: str = ""
) -> None:
    if not new:
        return
    metrics.PARKED.labels(reason.value).inc()
    log.warning(
        "change parked",
        extra={
            "reason": reason.value,
            "phone_number_id": phone_number_id,
            "entry_id": entry_id,
            "detail": detail,
        },
    )


def _keys(phone_number_id: str | None, waba_id: str | None) -> list[str]:
    """The lock a change is parked under: its number's, or (naming none) its account's."""
    if phone_number_id:
        return [f"pn:{phone_number_id}"]
    return [f"waba:{waba_id}"] if waba_id else []


def _digest(entry_id: str, raw: object) -> str:
    return hashlib.sha256(orjson.dumps([entry_id, raw], option=orjson.OPT_SORT_KEYS)).hexdigest()


def _at(unix_seconds: float) -> datetime:
    return datetime.fromtimestamp(unix_seconds, UTC)
