"""Real Redis (REDIS_URL) with a key namespace per test, and the fake Graph API over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from config.settings import get_settings
from tests.support.fake_graph import RunningFakeGraph, running_fake_graph


@pytest.fixture
def redis_url() -> str:
    return get_settings().redis_url


@pytest.fixture(scope="module")
def fake_graph() -> Iterator[RunningFakeGraph]:
    with running_fake_graph() as fake:
        yield fake


@pytest.fixture
def fake(fake_graph: RunningFakeGraph) -> RunningFakeGraph:
    fake_graph.reset(everything=True)
    return fake_graph
