"""Pacing of many waiting sends at once (the send engine's way): one script run hands out a
number's tokens to its waiting sends in order, still at the number's rate and pair limits."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis import Redis

from domain.errors import PacingDeferred
from workers.graph.pacing import Pacer
from workers.outbound.adapters import FleetPacer

pytestmark = pytest.mark.integration


def test_slots_are_spaced_at_the_rate_after_the_burst_and_the_pair_limit_takes_nothing(
    redis_client: Redis, namespace: str
) -> None:
    pacer = Pacer(redis_client, namespace=namespace, burst_seconds=0.1, pair_rate=0.1, pair_burst=1)
    sends = [(r, 1.0) for r in ["a", "a", "b", "c", "d", "e", "f", "g"]]
    answers = pacer.reserve_many("pn", 50, sends)
    assert answers[0] == (True, 0.0, "")
    assert answers[1][0] is False and answers[1][2] == "pair rate" and 9 < answers[1][1] <= 10
    granted = [wait for ok, wait, _ in answers if ok]
    assert granted[:5] == [0.0] * 5  # the burst: 5 slots at once
    # Then one every 20 ms; the refused pair took no slot.
    assert [round(w, 2) for w in granted[5:]] == [0.02, 0.04]


def test_a_slot_further_off_than_the_send_may_wait_is_refused_and_not_taken(
    redis_client: Redis, namespace: str
) -> None:
    pacer = Pacer(redis_client, namespace=namespace, burst_seconds=0.02)
    answers = pacer.reserve_many("pn", 50, [("a", 0.0), ("b", 0.01), ("c", 1.0)])
    assert answers[0] == (True, 0.0, "")
    assert answers[1][0] is False and answers[1][2] == "throughput"
    assert answers[2][0] is True and 0.015 < answers[2][1] <= 0.02  # b's slot went to c


def test_waiting_sends_of_a_number_are_held_to_its_rate(redis_client: Redis, namespace: str) -> None:
    fleet = FleetPacer(Pacer(redis_client, namespace=namespace, burst_seconds=0.2))

    async def sends() -> float:
        started = time.monotonic()
        await asyncio.gather(*(fleet.take("pn", 50, f"r{i}", 5.0) for i in range(40)))
        return time.monotonic() - started

    elapsed = asyncio.run(sends())
    # 10 tokens of burst, then 30 more at 50/s.
    assert 0.5 <= elapsed < 2.0


def test_a_wait_longer_than_allowed_is_deferred(redis_client: Redis, namespace: str) -> None:
    fleet = FleetPacer(Pacer(redis_client, namespace=namespace, pair_rate=0.1, pair_burst=1))

    async def twice() -> None:
        await fleet.take("pn", 50, "same", 0.5)
        await fleet.take("pn", 50, "same", 0.5)

    with pytest.raises(PacingDeferred) as caught:
        asyncio.run(twice())
    assert caught.value.reason == "pair rate" and 9 < caught.value.retry_after_seconds <= 10


def test_acquire_and_reserved_slots_share_one_budget_per_number(redis_client: Redis, namespace: str) -> None:
    pacer = Pacer(redis_client, namespace=namespace, burst_seconds=0.1)  # 5 slots of burst at 50 mps
    assert [pacer.acquire("pn", 50, f"r{i}") for i in range(3)] == [0.0] * 3
    answers = pacer.reserve_many("pn", 50, [(f"s{i}", 0.0) for i in range(4)])
    # The blocking calls took three of the five: two more now, then nothing without a wait.
    assert [ok for ok, _, _ in answers] == [True, True, False, False]
    assert answers[2][2] == "throughput" and 0 < answers[2][1] <= 0.02
    assert 0 < pacer.acquire("pn", 50) <= 0.02  # and the reserved slots count against acquire


def test_a_schedule_lost_with_redis_resumes_where_it_left_off(redis_client: Redis, namespace: str) -> None:
    pacer = Pacer(redis_client, namespace=namespace, burst_seconds=0.1)  # 5 slots of burst at 50 mps
    granted = pacer.reserve_many("pn", 50, [(None, 2.0)] * 50)
    since = time.monotonic()
    assert all(ok for ok, _, _ in granted)
    last = max(wait for _, wait, _ in granted)  # the burst, then 45 slots up to ~0.9 s ahead
    redis_client.delete(*redis_client.scan_iter(match=f"{namespace}*"))  # a restart without persistence
    # Not a fresh burst on top of the 45 slots still ahead: the next slot comes after them.
    [(ok, wait, _)] = pacer.reserve_many("pn", 50, [(None, 2.0)])
    assert ok and wait + (time.monotonic() - since) >= last, (wait, last)


def test_a_script_redis_lost_is_loaded_again_and_each_number_takes_its_slots_once(
    redis_client: Redis, namespace: str
) -> None:
    pacer = Pacer(redis_client, namespace=namespace, burst_seconds=0.1)
    first = pacer.reserve_for_numbers([("pn-a", 50, [(None, 0.0)]), ("pn-b", 50, [(None, 0.0)])])
    redis_client.script_flush()  # as after a restart of Redis
    again = pacer.reserve_for_numbers([("pn-a", 50, [(None, 0.0)]), ("pn-b", 50, [(None, 0.0)])])
    assert first == again == [[(True, 0.0, "")], [(True, 0.0, "")]]
    # A burst of 5 per number: 2 taken each above, so 3 more now at once, then the rate.
    rest = pacer.reserve_for_numbers([("pn-a", 50, [(None, 1.0)] * 4), ("pn-b", 50, [(None, 1.0)] * 4)])
    for number in rest:
        assert [wait for _, wait, _ in number][:3] == [0.0, 0.0, 0.0]
        assert number[3][0] is True and number[3][1] > 0
