"""The send handler against the fake Graph API over real HTTP, and real Postgres and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from uuid import UUID

import pytest
from redis import Redis
from sqlalchemy.engine import Engine

from config import get_settings
from domain.ports import Job
from ingress.api import ApiOptions, ApiResources
from ingress.api.accept import accept_send
from ingress.api.models import SendMessageRequest
from ingress.api.ratelimit import RateLimiter
from services.number_routes import NumberRouteCache
from tests.support.fake_graph import RunningFakeGraph, running_fake_graph
from tests.support.jobs import RecordingPublisher
from tests.support.tenants import Tenant, make_tenant
from workers.graph import BreakerPolicy, BreakerRegistry, GraphClient, Pacer
from workers.inbound.statuses import apply_pending_statuses
from workers.outbound.handler import SendCommand, SendDeps

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
            routes=NumberRouteCache(engine, ttl=0.0),
            jobs=publisher,
            catch_up=apply_pending_statuses,
            lease_seconds=60.0,
            pace_max_wait=0.5,
        )


@pytest.fixture
def tenant(engine: Engine) -> Tenant:
    return make_tenant(engine)


def queue(tenant: Tenant, body: dict[str, Any] | None = None, *, to: str | None = None) -> SendCommand:
    """A message accepted the way the API accepts it; returns the command of its job."""
    jobs = RecordingPublisher()
    redis = Redis.from_url(get_settings().redis_url)
    resources = ApiResources(
        tenant.engine,
        redis,
        jobs,
        RateLimiter(redis, limit=1, window_seconds=1, namespace="unused"),
        ApiOptions(),
    )
    body = body or {"to": to or tenant.contact(), "type": "text", "text": {"body": "hi"}}
    accept_send(resources, tenant.organization_id, SendMessageRequest.model_validate(body), None)
    redis.close()
    (job,) = jobs.jobs
    return command_of(job)


def command_of(job: Job, final: bool = False) -> SendCommand:
    kw = job.kwargs
    return SendCommand(
        UUID(kw["organization_id"]),
        UUID(kw["message_id"]),
        kw["phone_number_id"],
        kw["to"],
        final_attempt=final,
    )


def final(cmd: SendCommand) -> SendCommand:
    return replace(cmd, final_attempt=True)
