"""Fleet-wide counts for the scheduler's gauges. Cross-tenant reads: run them in a system unit of work."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.tables import messages, outbox


@dataclass(frozen=True, slots=True)
class Backlog:
    rows: int
    oldest_age_seconds: float | None


def outbox_backlog(conn: Connection) -> Backlog:
    """Outbox rows not yet published, and how long the oldest has waited."""
    row = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.extract("epoch", sa.func.now() - sa.func.min(outbox.c.created_at)),
        ).select_from(outbox)
    ).one()
    return Backlog(int(row[0]), float(row[1]) if row[1] is not None else None)


def stuck_sending(conn: Connection, older_than_seconds: float) -> int:
    """Messages in `sending` untouched for longer than the send lease (their worker is likely gone)."""
    cutoff = sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds)
    return int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(messages)
            .where(messages.c.status == "sending", messages.c.updated_at < cutoff)
        ).scalar_one()
    )
