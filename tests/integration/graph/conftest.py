"""Real Redis (REDIS_URL) with a key namespace per test, and the fake Graph API over real HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from redis import Redis

from config.settings import get_settings
from tests.support.fake_graph import RunningFakeGraph, running_fake_graph


@pytest.fixture
def redis_url() -> str:
    return get_settings().redis_url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def namespace(redis_client: Redis) -> Iterator[str]:
    """A key prefix no other test (or concurrent run) uses; its keys are deleted afterwards."""
    prefix = f"adsapp-test:{uuid.uuid4().hex}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture(scope="module")
def fake_graph() -> Iterator[RunningFakeGraph]:
    with running_fake_graph() as fake:
        yield fake


@pytest.fixture
def fake(fake_graph: RunningFakeGraph) -> RunningFakeGraph:
    fake_graph.reset(everything=True)
    return fake_graph
