"""The console's view of the send path's breakers: same keys, so what trips one shows, and a reset holds."""

from __future__ import annotations

import pytest
from redis import Redis

from domain.errors import CircuitOpen, GraphApiTransient, GraphErrorInfo
from services import breaker_keys, breakers
from workers.graph.breaker import BreakerPolicy, BreakerRegistry

pytestmark = pytest.mark.integration


def _fail() -> None:
    raise GraphApiTransient(GraphErrorInfo(code=None, title="ConnectError: refused"))


def test_a_breaker_tripped_by_sends_reads_open_and_a_reset_lets_sends_through(
    redis_client: Redis, namespace: str
) -> None:
    registry = BreakerRegistry(
        redis_client, namespace=namespace, number_policy=BreakerPolicy(fail_max=2, reset_timeout=300)
    )
    label = breaker_keys.number_label("pn-1")
    for _ in range(2):
        with pytest.raises(GraphApiTransient):
            registry.call("pn-1", _fail)
    with pytest.raises(CircuitOpen):
        registry.call("pn-1", lambda: "sent")

    seen = breakers.read(redis_client, namespace, [label, breaker_keys.number_label("pn-2")])
    assert seen[label].state == "open" and seen[label].is_open and seen[label].opened_at is not None
    assert seen[breaker_keys.number_label("pn-2")].state == "closed"

    breakers.reset(redis_client, namespace, label)
    assert registry.state("pn-1") == "closed"
    assert registry.call("pn-1", lambda: "sent") == "sent"
    assert breakers.read(redis_client, namespace, [label])[label].failures == 0
