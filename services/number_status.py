"""Each WhatsApp number as operators watch it: tier, current send rate, backlog, 24-hour reach, breaker."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import sqlalchemy as sa
from redis import Redis
from sqlalchemy.engine import Engine

from db.repos import bulk as bulk_repo
from db.tables import messages, organizations, whatsapp_numbers
from services import audit, breaker_keys, breakers, tenancy
from services.audit import Actor
from services.breakers import BreakerState


@dataclass(frozen=True, slots=True)
class NumberView:
    organization_id: UUID
    organization_name: str
    phone_number_id: str
    display_phone_number: str
    mps: int
    sent_last_minute: int  # outbound messages accepted by Meta in the last 60 s
    queued: int  # accepted sends not yet handed to Meta (paced or waiting for a worker)
    recipients_24h: int  # unique recipients in 24 h, counted as the bulk planner counts them
    messaging_limit: int | None  # Meta's tier for the number (None: not known, or unlimited)
    breaker: BreakerState

    @property
    def send_rate(self) -> float:
        return self.sent_last_minute / 60.0


def _stats() -> sa.Subquery:
    m = messages.c
    return (
        sa.select(
            m.phone_number_id,
            sa.func.count()
            .filter(m.sent_at >= sa.func.now() - sa.text("interval '60 seconds'"))
            .label("sent_last_minute"),
            sa.func.count().filter(m.status == "queued").label("queued"),
        )
        .where(m.direction == "outbound")
        .where(sa.or_(m.status == "queued", m.sent_at >= sa.func.now() - sa.text("interval '60 seconds'")))
        .group_by(m.phone_number_id)
        .subquery()
    )


def list_numbers(
    engine: Engine,
    redis: Redis,
    organization_id: UUID | None,
    namespace: str = breaker_keys.DEFAULT_NAMESPACE,
) -> list[NumberView]:
    """The numbers in the caller's scope (None: every tenant's), with their breakers' state."""
    n, o = whatsapp_numbers.c, organizations.c
    stats = _stats()
    query = (
        sa.select(
            n.organization_id,
            o.name,
            n.phone_number_id,
            n.display_phone_number,
            n.mps,
            sa.func.coalesce(stats.c.sent_last_minute, 0),
            sa.func.coalesce(stats.c.queued, 0),
            n.messaging_limit,
        )
        .join(organizations, o.id == n.organization_id)
        .outerjoin(stats, stats.c.phone_number_id == n.phone_number_id)
        .order_by(o.name, n.display_phone_number)
    )
    with tenancy.unit_of_work(engine, organization_id) as uow:
        rows = uow.conn.execute(query).all()
        reached = [bulk_repo.recent_recipients(uow.conn, row[2], [])[0] for row in rows]
    labels = [breaker_keys.number_label(row[2]) for row in rows]
    states = breakers.read(redis, namespace, labels)
    return [
        NumberView(*row[:7], recipients_24h=used, messaging_limit=row[7], breaker=states[label])
        for row, used, label in zip(rows, reached, labels, strict=True)
    ]


def find_number(engine: Engine, organization_id: UUID | None, phone_number_id: str) -> UUID | None:
    """The organization owning `phone_number_id`, if the caller's scope can see it."""
    n = whatsapp_numbers.c
    with tenancy.unit_of_work(engine, organization_id) as uow:
        return uow.conn.execute(
            sa.select(n.organization_id).where(n.phone_number_id == phone_number_id)
        ).scalar_one_or_none()


class NumberNotFound(LookupError):
    """No number by that id in the caller's scope."""

    def __init__(self, phone_number_id: str) -> None:
        super().__init__(f"no number {phone_number_id!r} in this scope")
        self.phone_number_id = phone_number_id


def reset_breaker(
    engine: Engine,
    redis: Redis,
    organization_id: UUID | None,
    actor: Actor,
    phone_number_id: str,
    namespace: str = breaker_keys.DEFAULT_NAMESPACE,
) -> BreakerState:
    """Close a number's breaker for the whole fleet, recorded in the audit trail with its actor."""
    owner = find_number(engine, organization_id, phone_number_id)
    if owner is None:
        raise NumberNotFound(phone_number_id)
    label = breaker_keys.number_label(phone_number_id)
    before = breakers.read(redis, namespace, [label])[label]
    with tenancy.unit_of_work(engine, organization_id) as uow:
        audit.record(
            uow.conn,
            actor,
            "breaker.reset",
            aggregate_type="whatsapp_number",
            aggregate_id=phone_number_id,
            organization_id=owner,
            details={"previous_state": before.state, "failures": before.failures},
        )
        after = breakers.reset(redis, namespace, label)
        uow.commit()
    return after
