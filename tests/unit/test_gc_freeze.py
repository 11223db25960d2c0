"""A booted worker has its boot-time objects frozen and collects its youngest generation rarely."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from workers.gc_freeze import YOUNGEST_THRESHOLD, FreezeAfterBoot


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_after_boot_the_boot_objects_are_frozen_and_the_youngest_generation_waits_longer(
    collector: None,
) -> None:
    before = gc.get_threshold()
    FreezeAfterBoot().after_worker_boot(None, None)  # type: ignore[arg-type]
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNGEST_THRESHOLD, before[1], before[2])
