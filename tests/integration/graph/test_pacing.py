"""Fleet-wide pacing on the real Redis: the rate holds across threads and processes."""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import pytest
from redis import Redis

from domain.errors import PacingDeferred
from tests.integration.graph import procs
from workers.graph.pacing import Pacer

pytestmark = pytest.mark.integration
MPS = 50
WINDOW = 2.5


def test_threads_are_held_to_the_numbers_mps(redis_client: Redis, namespace: str) -> None:
    pacer = Pacer(redis_client, namespace=namespace)
    while pacer.acquire("pn", MPS) == 0:  # spend the initial burst, so only the refill is measured
        pass
    start = time.monotonic()
    end = start + WINDOW
    granted: list[float] = []
    lock = threading.Lock()

    def run() -> None:
        while True:
            pacer.wait_for_token("pn", MPS, max_wait=5)
            now = time.monotonic()
            if now > end:
                return
            with lock:
                granted.append(now)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    expected = MPS * WINDOW
    assert abs(len(granted) - expected) <= 0.05 * expected, len(granted)
    # Evenly spread, not bunched: no 0.5 s slice gets more than its share plus a token or two.
    for second in range(int(WINDOW / 0.5)):
        in_slice = [t for t in granted if start + 0.5 * second <= t < start + 0.5 * (second + 1)]
        assert len(in_slice) <= MPS * 0.5 + 2


def test_two_processes_share_one_bucket(redis_url: str, namespace: str) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(2, mp_context=context) as pool:
        ready = manager.Barrier(2, timeout=120)  # both children spawned and imported, then they start
        futures = [
            pool.submit(procs.count_grants, redis_url, namespace, "pn", MPS, ready, WINDOW, 3)
            for _ in range(2)
        ]
        counts = [future.result(180) for future in futures]
    burst = MPS * 0.1  # the children's pacers allow a tenth of a second of burst
    expected = MPS * WINDOW + burst
    assert all(count > 0 for count in counts), counts
    assert abs(sum(counts) - expected) <= 0.05 * expected, counts


def test_pair_limit_holds_per_recipient_without_wasting_number_tokens(
    redis_client: Redis, namespace: str
) -> None:
    pacer = Pacer(redis_client, namespace=namespace, pair_burst=1)
    assert pacer.acquire("pn", 2, "alice") == 0
    wait = pacer.acquire("pn", 2, "alice")
    assert 5.5 < wait <= 6.0  # one message every 6 s once the pair's burst is spent
    # The refused pair did not take the number's token, so bob still gets it; then the number is empty.
    assert pacer.acquire("pn", 2, "bob") == 0
    assert 0 < pacer.acquire("pn", 2, "carol") <= 0.5


def test_long_waits_are_deferred_not_slept(redis_client: Redis, namespace: str) -> None:
    slept: list[float] = []
    pacer = Pacer(redis_client, namespace=namespace, pair_burst=1, sleep=slept.append)
    pacer.wait_for_token("pn", 100, "alice")
    with pytest.raises(PacingDeferred) as caught:
        pacer.wait_for_token("pn", 100, "alice", max_wait=1.0)
    assert caught.value.reason == "pair rate" and caught.value.retry_after_seconds > 5
    assert slept == []


def test_short_waits_are_slept_through(redis_client: Redis, namespace: str) -> None:
    pacer = Pacer(redis_client, namespace=namespace)
    while pacer.acquire("pn", 20) == 0:
        pass
    waited = pacer.wait_for_token("pn", 20, max_wait=1.0)
    assert 0 < waited < 0.2


def test_keys_expire_once_the_bucket_would_be_full(redis_client: Redis, namespace: str) -> None:
    Pacer(redis_client, namespace=namespace).acquire("pn", 10, "alice")
    ttls = {key: redis_client.pttl(key) for key in redis_client.scan_iter(match=f"{namespace}*")}
    assert len(ttls) == 2 and all(0 < ttl <= 61_000 for ttl in ttls.values()), ttls
