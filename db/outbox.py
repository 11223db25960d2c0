"""The transactional outbox: jobs written with the rows they concern, published after commit."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.tables import outbox
from domain.ports import Job


def add(conn: Connection, organization_id: UUID | None, job: Job) -> int:
    row_id = conn.execute(
        sa.insert(outbox)
        .values(
            organization_id=organization_id,
            queue=job.queue,
            actor=job.actor,
            args=list(job.args),
            kwargs=dict(job.kwargs),
            delay_ms=job.delay_ms,
        )
        .returning(outbox.c.id)
    ).scalar_one()
    return int(row_id)


def remove(conn: Connection, ids: Sequence[int]) -> None:
    conn.execute(sa.delete(outbox).where(outbox.c.id.in_(ids)))


def claim_stale(conn: Connection, older_than_seconds: float, limit: int) -> list[tuple[int, Job]]:
    """Rows a crash left behind, locked so that concurrent sweepers skip them. Needs system scope."""
    rows = conn.execute(
        sa.select(outbox)
        .where(
            outbox.c.created_at < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds)
        )
        .order_by(outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).mappings()
    return [
        (int(r["id"]), Job(r["queue"], r["actor"], tuple(r["args"]), dict(r["kwargs"]), r["delay_ms"]))
        for r in rows
    ]
