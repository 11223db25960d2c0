"""Reading the audit trail back in tests: the actions recorded for an aggregate type."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.tables import event_store
from db.uow import UnitOfWork


def actions(
    engine: Engine, organization_id: UUID, aggregate_type: str
) -> list[tuple[str, str, dict[str, Any]]]:
    """(event type, aggregate id, payload) of the organization's actions on `aggregate_type`, in order."""
    with UnitOfWork(engine, organization_id=organization_id) as uow:
        rows = uow.conn.execute(
            sa.select(event_store.c.event_type, event_store.c.aggregate_id, event_store.c.payload)
            .where(event_store.c.aggregate_type == aggregate_type)
            .order_by(event_store.c.id)
        ).all()
    return [(r.event_type, r.aggregate_id, r.payload) for r in rows]
