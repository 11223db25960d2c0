"""The fleet at a glance, from the database: sends by outcome, dead letters, bulk jobs, webhooks.

Queue depths come from the broker and breaker states from Redis; this module covers what Postgres
knows, in the caller's tenant scope (None: every tenant).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.tables import bulk_jobs, dead_letters, messages, webhook_events
from domain import bulk as rules
from services import tenancy

ACTIVE_BULK_STATUSES = (*sorted(rules.ACTIVE), rules.PAUSED, rules.CANCELLING)


@dataclass(frozen=True, slots=True)
class BulkJobLine:
    id: UUID
    organization_id: UUID
    kind: str
    status: str
    total: int
    settled: int  # succeeded, failed, skipped or cancelled

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else min(100, int(100 * self.settled / self.total))


@dataclass(frozen=True, slots=True)
class Overview:
    sends_by_status: dict[str, int]  # outbound messages of the last hour, by status
    webhooks_last_minute: dict[str, int]  # webhook events received in the last 60 s, by source
    dead_letters: int
    oldest_dead_letter_at: datetime | None
    bulk_jobs: list[BulkJobLine]


def overview(engine: Engine, organization_id: UUID | None) -> Overview:
    m, d, b, w = messages.c, dead_letters.c, bulk_jobs.c, webhook_events.c
    hour_ago = sa.func.now() - sa.text("interval '1 hour'")
    minute_ago = sa.func.now() - sa.text("interval '60 seconds'")
    with tenancy.unit_of_work(engine, organization_id) as uow:
        conn = uow.conn
        sends = conn.execute(
            sa.select(m.status, sa.func.count())
            .where(m.direction == "outbound", m.created_at >= hour_ago)
            .group_by(m.status)
        ).all()
        hooks = conn.execute(
            sa.select(w.source, sa.func.count()).where(w.received_at >= minute_ago).group_by(w.source)
        ).all()
        dead, oldest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(d.first_failed_at)).where(d.status == "dead")
        ).one()
        jobs = conn.execute(
            sa.select(
                b.id,
                b.organization_id,
                b.kind,
                b.status,
                b.total,
                b.succeeded + b.failed + b.skipped + b.cancelled,
            )
            .where(b.status.in_(ACTIVE_BULK_STATUSES))
            .order_by(b.created_at.desc())
            .limit(20)
        ).all()
    return Overview(
        sends_by_status={status: count for status, count in sends},
        webhooks_last_minute={source: count for source, count in hooks},
        dead_letters=dead,
        oldest_dead_letter_at=oldest,
        bulk_jobs=[BulkJobLine(*row) for row in jobs],
    )
