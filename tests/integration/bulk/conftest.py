"""The API with a recording job publisher, so a test runs the bulk chunks it planned in-process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from config import Settings
from devkit.jobs import RecordingPublisher
from ingress.api import ApiOptions, ApiResources, ApiState
from ingress.api.ratelimit import RateLimiter
from tests.support.api import api_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture(scope="module")
def client(settings: Settings, engine: Engine, publisher: RecordingPublisher) -> Iterator[TestClient]:
    options = ApiOptions(rate_limit=10_000, redis_namespace=f"adsapp-test:{uuid.uuid4().hex}")
    redis = Redis.from_url(settings.redis_url)
    limiter = RateLimiter(
        redis, limit=options.rate_limit, window_seconds=60, namespace=options.redis_namespace
    )
    state = ApiState(options=options, resources=ApiResources(engine, redis, publisher, limiter, options))
    with TestClient(api_app(state)) as test_client:
        yield test_client
    redis.close()


@pytest.fixture
def jobs(publisher: RecordingPublisher) -> RecordingPublisher:
    publisher.jobs.clear()
    return publisher
