"""Fleet-wide counters on the real Redis: several processes' counts summed over windows of seconds
and of minutes, written off the caller's path, kept through a Redis failure, expiring on their own."""

from __future__ import annotations

import os
from typing import Any

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from devkit.processes import wait_for
from services import deferrals, fleet_counters
from services.fleet_counters import FleetCounters

pytestmark = pytest.mark.integration

T = 1_900_000_020.0  # a minute's 20th second


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_two_processes_counts_are_summed_over_seconds_and_minutes(
    redis_client: Redis, namespace: str
) -> None:
    clock = Clock(T)
    first, second = (
        FleetCounters(redis_client, namespace, clock=clock),
        FleetCounters(redis_client, namespace, clock=clock),
    )
    for _ in range(4):
        first.add("f", "a")
    second.add("f", "a", 6)
    second.add("f", "b")
    clock.now = T - 90  # the previous minute and beyond the last minute's seconds
    first.add("f", "a", 100)
    assert first.flush() and second.flush()
    assert fleet_counters.totals(redis_client, namespace, "f", 60, now=T) == {"a": 10, "b": 1}
    assert fleet_counters.totals(redis_client, namespace, "f", 3600, now=T) == {"a": 110, "b": 1}
    # Rates leave out the seconds that may not be written yet, and divide by the window.
    assert fleet_counters.rates(redis_client, namespace, "f", 10, now=T) == {}
    assert fleet_counters.rates(redis_client, namespace, "f", 10, now=T + 2) == {"a": 1.0, "b": 0.1}
    assert fleet_counters.rates(redis_client, namespace, "f", 10, now=T + 12) == {}
    # Each bucket expires on its own: seconds within minutes, minutes after the hour.
    second_ttl = redis_client.ttl(fleet_counters.bucket_key(namespace, "f", 1, int(T)))
    minute_ttl = redis_client.ttl(fleet_counters.bucket_key(namespace, "f", 60, int(T) // 60))
    assert 0 < second_ttl <= 181 and 3600 < minute_ttl <= 65 * 60 + 60


def test_adding_never_waits_for_redis_the_thread_writes(redis_client: Redis, namespace: str) -> None:
    counters = FleetCounters(redis_client, namespace, interval=0.05)
    counters.add("f", "x", 3)
    assert wait_for(lambda: fleet_counters.totals(redis_client, namespace, "f", 60).get("x") == 3, 5)
    counters.close()


class _FailingOnce:
    """A Redis whose first pipeline fails as an outage would."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self.failed = False

    def pipeline(self, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed = True
            raise RedisConnectionError("redis down")
        return self._redis.pipeline(**kwargs)


def test_counts_are_kept_through_a_redis_failure(redis_client: Redis, namespace: str) -> None:
    counters = FleetCounters(_FailingOnce(redis_client), namespace, clock=Clock(T))  # type: ignore[arg-type]
    counters.add("f", "a", 2)
    assert counters.flush() is False
    counters.add("f", "a")
    assert counters.flush() is True
    assert fleet_counters.totals(redis_client, namespace, "f", 60, now=T) == {"a": 3}


def test_a_window_that_is_not_whole_minutes_is_refused(redis_client: Redis, namespace: str) -> None:
    with pytest.raises(ValueError, match="whole minutes"):
        fleet_counters.totals(redis_client, namespace, "f", 3630)


def test_pacing_deferrals_per_number_are_only_those_asked_for(redis_client: Redis, namespace: str) -> None:
    clock = Clock(T)
    counters = FleetCounters(redis_client, namespace, clock=clock)
    deferrals.count_deferral(counters, "pn-mine", "throughput")
    deferrals.count_deferral(counters, "pn-mine", "pair_rate")
    deferrals.count_deferral(counters, "pn-mine", "circuit_open")  # a deferral, not pacing's
    deferrals.count_deferral(counters, "pn-theirs", "throughput")
    clock.now = T - 600
    deferrals.count_deferral(counters, "pn-mine", "throughput")
    counters.flush()
    found = deferrals.pacing_deferrals(redis_client, ["pn-mine", "pn-quiet"], namespace, now=T)
    assert set(found) == {"pn-mine", "pn-quiet"}
    mine = found["pn-mine"]
    assert (mine.last_minute, mine.last_hour) == (2, 3)
    assert mine.by_reason_last_hour == {"throughput": 2, "pair_rate": 1}
    assert (found["pn-quiet"].last_minute, found["pn-quiet"].last_hour) == (0, 0)


def test_the_shared_counters_are_one_per_redis_and_namespace(namespace: str) -> None:
    url = "redis://127.0.0.1:6379/0"
    assert fleet_counters.shared(url, namespace) is fleet_counters.shared(url, namespace)
    assert fleet_counters.shared(url, namespace) is not fleet_counters.shared(url, namespace + ":other")


def test_a_forked_child_writes_its_own_counts_only(redis_client: Redis, namespace: str) -> None:
    counters = FleetCounters(redis_client, namespace, clock=Clock(T), interval=3600)
    counters.add("f", "a", 5)  # the parent's, not yet written when the child is forked
    pid = os.fork()
    if pid == 0:  # the child: as a Dramatiq worker process forked from its parent
        code = 1
        try:
            counters.add("f", "a", 2)
            code = 0 if counters.flush() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert counters.flush()
    assert fleet_counters.totals(redis_client, namespace, "f", 60, now=T) == {"a": 7}
