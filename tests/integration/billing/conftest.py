from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db import tables as t
from db.repos.organizations import create_organization
from db.uow import UnitOfWork
from domain.billing.ports import SubscriptionSource
from tests.support import stripe_events as se
from workers.billing.handler import Handled, handle_stripe_event

pytestmark = pytest.mark.integration


@pytest.fixture
def new_org(engine: Engine) -> Callable[[], uuid.UUID]:
    def make() -> uuid.UUID:
        with UnitOfWork(engine, system=True) as uow:
            org = create_organization(uow.conn, f"org-{uuid.uuid4().hex[:6]}")
            uow.commit()
        return org

    return make


@pytest.fixture
def send(engine: Engine) -> Callable[..., Handled]:
    """Hand one event to the billing handler, as the actor does."""

    def deliver(evt: dict[str, Any], source: SubscriptionSource | None = None) -> Handled:
        return handle_stripe_event(engine, se.body_of(evt), source=source)

    return deliver


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
