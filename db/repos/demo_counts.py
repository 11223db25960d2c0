"""Read-only counts for a guided demo's summary: what of a list of ids reached the database."""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.tables import dead_letters, messages


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
