"""Functions run in other processes (spawned), to prove state is shared through Redis."""

from __future__ import annotations

import threading
import time
from typing import Any

from redis import Redis

from domain.errors import CircuitOpen
from workers.graph.breaker import BreakerPolicy, BreakerRegistry
from workers.graph.client import GraphClient
from workers.graph.pacing import Pacer


def breaker_state(redis_url: str, namespace: str, phone_number_id: str) -> str:
    registry = BreakerRegistry(
        Redis.from_url(redis_url), namespace=namespace, number_policy=BreakerPolicy(3, 30)
    )
    return registry.state(phone_number_id)


def try_send(redis_url: str, namespace: str, graph_url: str, phone_number_id: str) -> str:
    """'circuit-open:<scope>' when the breaker refused, else the wamid."""
    registry = BreakerRegistry(
        Redis.from_url(redis_url), namespace=namespace, number_policy=BreakerPolicy(3, 30)
    )
    with GraphClient(graph_url, "v21.0") as client:
        try:
            result = registry.call(
                phone_number_id,
                lambda: client.send_message(phone_number_id, "tok", {"to": "1", "type": "text"}),
            )
        except CircuitOpen as exc:
            return f"circuit-open:{exc.scope}"
    return result.wamid


def count_grants(
    redis_url: str,
    namespace: str,
    phone_number_id: str,
    mps: float,
    ready: Any,
    seconds: float,
    threads: int,
) -> int:
    """Tokens granted to `threads` threads for `seconds` (wall clock), starting together with the
    other processes waiting at the barrier `ready` (so a slow spawn or import cannot shorten one's
    window)."""
    pacer = Pacer(Redis.from_url(redis_url), namespace=namespace, burst_seconds=0.1)
    ready.wait()
    start_at = time.time() + 0.2
    granted = [0] * threads

    def run(slot: int) -> None:
        time.sleep(max(0.0, start_at - time.time()))
        end = start_at + seconds
        while True:
            pacer.wait_for_token(phone_number_id, mps, max_wait=5.0)
            if time.time() > end:
                return
            granted[slot] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(granted)
