from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.engine import Engine

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
