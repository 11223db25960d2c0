from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.repos.organizations import add_number, create_organization
from db.uow import UnitOfWork
from tests.support.jobs import RecordingPublisher
from workers.inbound.decode import decode_delivery
from workers.inbound.delivery import Deps, process_delivery
from workers.inbound.handler import Outcome
from workers.inbound.routes import RouteCache

pytestmark = pytest.mark.integration


@dataclass
class Tenant:
    organization_id: UUID
    phone_number_id: str
    waba_id: str


def make_tenant(engine: Engine, token: str | None = "tenant-token") -> Tenant:
    tag = uuid.uuid4().hex[:10]
    with UnitOfWork(engine, system=True) as uow:
        org = create_organization(uow.conn, f"org-{tag}")
        add_number(
            uow.conn,
            org,
            phone_number_id=f"pn-{tag}",
            display_phone_number="15550783881",
            waba_id=f"waba-{tag}",
            access_token=token,
        )
        uow.commit()
    return Tenant(org, f"pn-{tag}", f"waba-{tag}")


@pytest.fixture
def tenant(engine: Engine) -> Tenant:
    return make_tenant(engine)


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def deliver(engine: Engine, publisher: RecordingPublisher) -> Iterator[Callable[..., list[Outcome]]]:
    routes = RouteCache(engine, ttl=0.0)

    def run(document: dict[str, Any] | bytes | str, received_at: float | None = None) -> list[Outcome]:
        from tests.support import whatsapp as wa

        body = document if isinstance(document, str | bytes) else wa.encode(document)
        delivery = decode_delivery(body)
        return process_delivery(delivery, received_at or time.time(), Deps(engine, publisher, routes, None))

    yield run


def rows(engine: Engine, org: UUID, sql: str, **params: Any) -> list[Any]:
    with UnitOfWork(engine, organization_id=org) as uow:
        return list(uow.conn.execute(sa.text(sql), params).mappings())
