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


def test_a_batch_takes_what_the_bucket_holds_and_the_pair_limit_takes_nothing(
    redis_client: Redis, namespace: str
) -> None:
    pacer = Pacer(redis_client, namespace=namespace, burst_seconds=0.1, pair_rate=0.1, pair_burst=1)
    answers = pacer.acquire_many("pn", 50, ["a", "a", "b", "c", "d", "e", "f", "g"])
    assert answers[0] == (0.0, "")
    assert answers[1][1] == "pair rate" and 9 < answers[1][0] <= 10  # "a" used its one token
    assert [a for a in answers[2:] if a == (0.0, "")] == [(0.0, "")] * 4  # 5 tokens in the bucket
    assert all(reason == "throughput" for _, reason in answers[6:])
    # The refused pair did not cost the number a token: the next token goes to "h" in ~20 ms.
    time.sleep(0.03)
    assert pacer.acquire_many("pn", 50, ["h"]) == [(0.0, "")]


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
