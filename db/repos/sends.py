"""Small reads the send use case needs beyond the outbound repository."""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.tables import messages


def message_exists(conn: Connection, message_id: UUID) -> bool:
    return conn.execute(sa.select(messages.c.id).where(messages.c.id == message_id)).first() is not None
