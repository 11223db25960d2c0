from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from devkit.jobs import RecordingPublisher
from devkit.tenants import Tenant, make_tenant
from services.number_routes import RouteCache
from workers.inbound.decode import decode_delivery
from workers.inbound.delivery import Deps, process_delivery
from workers.inbound.handler import Outcome

pytestmark = pytest.mark.integration


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
        from devkit import whatsapp as wa

        body = document if isinstance(document, str | bytes) else wa.encode(document)
        delivery = decode_delivery(body)
        return process_delivery(delivery, received_at or time.time(), Deps(engine, publisher, routes, None))

    yield run
