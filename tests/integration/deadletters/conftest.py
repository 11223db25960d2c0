"""An in-process Dramatiq worker on the real broker with the fleet's retry and dead-letter
middleware (fast backoffs), and actors that count their calls."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from config import Settings
from tests.support.deadletter_fleet import Fleet

pytestmark = pytest.mark.integration


@pytest.fixture
def fleet(settings: Settings) -> Iterator[Fleet]:
    f = Fleet(settings)
    try:
        yield f
    finally:
        f.stop()
