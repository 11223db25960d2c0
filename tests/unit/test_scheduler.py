"""The scheduler's loop: a failed sweep is tried again after a short wait, not a whole interval; a
task stuck on the Graph API delays only its own lane, and a stop does not wait for it long."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import cast

from workers import resources
from workers.scheduler import (
    GRAPH_LANE,
    RETRY_AFTER_FAILURE_SECONDS,
    STOP_GRACE_SECONDS,
    SWEEPS_LANE,
    TASKS,
    PeriodicTask,
    run,
)

# The loop hands `res` to each task untouched; these tasks never look at it.
NO_RESOURCES = cast(resources.Resources, None)


def test_a_failed_task_is_retried_after_its_retry_wait() -> None:
    stop = threading.Event()
    calls: list[float] = []

    def flaky(_res: resources.Resources) -> int:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise ConnectionError("the Graph API is not up yet")
        stop.set()
        return 1

    task = PeriodicTask("template-sync", 6 * 3600.0, flaky, retry_seconds=0.2)
    runner = threading.Thread(target=run, args=(stop, [task], NO_RESOURCES))
    runner.start()
    runner.join(10)
    stop.set()
    assert not runner.is_alive()
    assert len(calls) == 2
    assert calls[1] - calls[0] >= 0.2
    # Back to the interval once it succeeded.
    assert task.next_at - time.monotonic() > 6 * 3600.0 - 60


def test_a_successful_task_waits_its_interval() -> None:
    stop = threading.Event()
    calls: list[float] = []

    def fine(_res: resources.Resources) -> int:
        calls.append(time.monotonic())
        return 0

    slow = PeriodicTask("slow", 3600.0, fine, retry_seconds=0.01)
    ender = PeriodicTask("ender", 3600.0, lambda _r: stop.set() or 0, next_at=time.monotonic() + 0.3)
    runner = threading.Thread(target=run, args=(stop, [slow, ender], NO_RESOURCES))
    runner.start()
    runner.join(10)
    assert not runner.is_alive()
    assert len(calls) == 1


def test_every_scheduled_task_retries_sooner_than_its_interval_when_that_is_long() -> None:
    for task in TASKS:
        assert task.delay_after(ok=True) == task.interval_seconds
        assert task.delay_after(ok=False) == min(task.interval_seconds, RETRY_AFTER_FAILURE_SECONDS)
    sync = next(t for t in TASKS if t.name == "template-sync")
    assert sync.delay_after(ok=False) <= 60 < sync.delay_after(ok=True)


def test_a_slow_graph_task_does_not_hold_up_the_sweeps_and_a_stop_does_not_wait_for_it() -> None:
    stop = threading.Event()
    release = threading.Event()
    sweeps: list[float] = []

    def slow_sync(_res: resources.Resources) -> int:
        release.wait(60)  # a template sync paging through thousands of organizations
        return 0

    def sweep(_res: resources.Resources) -> int:
        sweeps.append(time.monotonic())
        return 0

    sync = PeriodicTask("template-sync", 3600.0, slow_sync, lane=GRAPH_LANE)
    outbox = PeriodicTask("outbox", 0.05, sweep)
    runner = threading.Thread(target=run, args=(stop, [sync, outbox], NO_RESOURCES))
    runner.start()
    try:
        assert wait_until(lambda: len(sweeps) >= 5, 10), sweeps
    finally:
        stopped_at = time.monotonic()
        stop.set()
        runner.join(STOP_GRACE_SECONDS + 5)
        release.set()
    assert not runner.is_alive()
    assert time.monotonic() - stopped_at < STOP_GRACE_SECONDS + 2


def test_the_template_sync_runs_in_a_lane_of_its_own() -> None:
    assert {t.name for t in TASKS if t.lane == GRAPH_LANE} == {"template-sync"}
    assert {t.lane for t in TASKS if t.name != "template-sync"} == {SWEEPS_LANE}


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
