"""Billing rows for the Stripe tests."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db import tables as t
from db.uow import UnitOfWork


def org_row(engine: Engine, org: uuid.UUID) -> Any:
    with UnitOfWork(engine, organization_id=org) as uow:
        return uow.conn.execute(sa.select(t.organizations).where(t.organizations.c.id == org)).one()


def webhook_row(owner_engine: Engine, event_id: str) -> Any:
    # As the table owner, so rows attached to no organization are visible too.
    with owner_engine.connect() as conn:
        return conn.execute(
            sa.select(t.webhook_events).where(t.webhook_events.c.event_id == event_id)
        ).one_or_none()


def store_events(engine: Engine, org: uuid.UUID) -> list[Mapping[str, Any]]:
    with UnitOfWork(engine, organization_id=org) as uow:
        rows = uow.conn.execute(
            sa.select(t.event_store.c.event_type, t.event_store.c.payload)
            .where(t.event_store.c.aggregate_type == "billing")
            .order_by(t.event_store.c.id)
        ).all()
    return [{"event_type": r.event_type, **r.payload} for r in rows]
