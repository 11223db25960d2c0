"""A no-op actor on the fleet's broker setup, for the drain baseline of bench/inbound.py:
`dramatiq bench.noop_worker --queues bench_noop`."""

from __future__ import annotations

import dramatiq

from workers.broker import setup_broker

broker = setup_broker()


@dramatiq.actor(queue_name="bench_noop", max_retries=0)
def noop(body: str, received_at: float | None = None, request_id: str | None = None) -> None:
    return None
