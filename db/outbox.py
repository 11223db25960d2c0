"""The transactional outbox: jobs written with the rows they concern, published after commit."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import orjson
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


# Ids drawn in the jobs' order inside a CTE evaluated once (it calls nextval), so the answer maps
# each job to its own row whatever order the INSERT writes them in.
_ADD_MANY = sa.text(
    """
    WITH j AS (
        SELECT nextval(pg_get_serial_sequence('outbox', 'id')) AS id, j.n, j.queue, j.actor, j.args,
               j.kwargs, j.delay_ms
        FROM unnest(CAST(:queue AS text[]), CAST(:actor AS text[]), CAST(:args AS jsonb[]),
                    CAST(:kwargs AS jsonb[]), CAST(:delay_ms AS int[]))
             WITH ORDINALITY AS j(queue, actor, args, kwargs, delay_ms, n)
    ), written AS (
        INSERT INTO outbox (id, organization_id, queue, actor, args, kwargs, delay_ms)
        SELECT id, :org, queue, actor, args, kwargs, delay_ms FROM j
    )
    SELECT id FROM j ORDER BY n
    """
)


def add_many(conn: Connection, organization_id: UUID | None, jobs: Sequence[Job]) -> list[int]:
    """`add` for many jobs in one statement; their outbox ids, in the jobs' order."""
    if not jobs:
        return []
    rows = conn.execute(
        _ADD_MANY,
        {
            "org": organization_id,
            "queue": [j.queue for j in jobs],
            "actor": [j.actor for j in jobs],
            "args": [orjson.dumps(list(j.args)).decode() for j in jobs],
            "kwargs": [orjson.dumps(dict(j.kwargs)).decode() for j in jobs],
            "delay_ms": [j.delay_ms for j in jobs],
        },
    ).scalars()
    return [int(v) for v in rows]


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
