"""The send handler against the fake Graph API over real HTTP, and real Postgres and Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis
from sqlalchemy.engine import Engine

from devkit.jobs import RecordingPublisher
from devkit.tenants import Tenant, make_tenant
from services.number_routes import RouteCache
from tests.support.fake_graph import RunningFakeGraph, running_fake_graph
from workers.graph import BreakerPolicy, BreakerRegistry, GraphClient, Pacer
from workers.inbound.statuses import apply_pending_statuses
from workers.outbound.handler import SendDeps

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fake_graph() -> Iterator[RunningFakeGraph]:
    with running_fake_graph() as fake:
        yield fake


@pytest.fixture
def fake(fake_graph: RunningFakeGraph) -> RunningFakeGraph:
    fake_graph.reset(everything=True)
    return fake_graph


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def deps(
    engine: Engine, fake: RunningFakeGraph, redis_client: Redis, namespace: str, publisher: RecordingPublisher
) -> Iterator[SendDeps]:
    with GraphClient(fake.url, "v21.0", timeout=2.0, retry_attempts=1) as graph:
        yield SendDeps(
            engine=engine,
            graph=graph,
            breakers=BreakerRegistry(
                redis_client, namespace=f"{namespace}:breaker", number_policy=BreakerPolicy(3, 30)
            ),
            pacer=Pacer(redis_client, namespace=f"{namespace}:pace"),
            routes=RouteCache(engine, ttl=0.0),
            jobs=publisher,
            catch_up=apply_pending_statuses,
            lease_seconds=60.0,
            pace_max_wait=0.5,
        )


@pytest.fixture
def tenant(engine: Engine) -> Tenant:
    return make_tenant(engine)
