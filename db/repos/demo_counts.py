"""Read-only counts for a guided demo's summary: what of a list of ids reached the database."""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.tables import bulk_job_items, bulk_jobs, dead_letters, messages


def stored_wamids(conn: Connection, wamids: list[str]) -> Counter[str]:
    """How many message rows each wamid has (0 is absent, 1 is right)."""
    if not wamids:
        return Counter()
    rows = conn.execute(
        sa.select(messages.c.wamid, sa.func.count())
        .where(messages.c.wamid.in_(wamids))
        .group_by(messages.c.wamid)
    )
    return Counter({str(w): int(n) for w, n in rows})


def send_states(conn: Connection, message_ids: list[str]) -> dict[str, str]:
    """Status per message id, for the ids that have a row."""
    if not message_ids:
        return {}
    rows = conn.execute(
        sa.select(sa.cast(messages.c.id, sa.Text), messages.c.status).where(
            sa.cast(messages.c.id, sa.Text).in_(message_ids)
        )
    )
    return {str(i): str(s) for i, s in rows}


def dead_letter_count(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar_one())


def broadcast_items(
    conn: Connection, job_id: str
) -> tuple[str | None, list[tuple[str, str | None, str | None]]]:
    """A bulk job's status and, per item, its status, message id and that message's status."""
    status = conn.execute(
        sa.select(bulk_jobs.c.status).where(sa.cast(bulk_jobs.c.id, sa.Text) == job_id)
    ).scalar_one_or_none()
    rows = conn.execute(
        sa.select(bulk_job_items.c.status, sa.cast(bulk_job_items.c.message_id, sa.Text), messages.c.status)
        .select_from(bulk_job_items.outerjoin(messages, messages.c.id == bulk_job_items.c.message_id))
        .where(sa.cast(bulk_job_items.c.bulk_job_id, sa.Text) == job_id)
    )
    return (None if status is None else str(status)), [(str(a), b, c) for a, b, c in rows]
