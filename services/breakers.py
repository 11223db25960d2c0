"""Reading and resetting the Graph API circuit breakers from outside the send path.

The breakers live in Redis (see `services.breaker_keys`); a reset closes one for the whole fleet,
since every worker's breaker reads its state from the same keys on each call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis

from services import breaker_keys

CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class BreakerState:
    label: str
    state: str  # 'closed', 'open' or 'half-open'
    failures: int
    opened_at: datetime | None

    @property
    def is_open(self) -> bool:
        return self.state != CLOSED


def _decode(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def read(redis: Redis, namespace: str, labels: list[str]) -> dict[str, BreakerState]:
    """The state of each breaker named by label, in one round trip; an unknown breaker is closed."""
    names = ("state", "fail_counter", "opened_at")
    keys = [
        breaker_keys.pybreaker_key(breaker_keys.scope_prefix(namespace, label), name)
        for label in labels
        for name in names
    ]
    values = redis.mget(keys) if keys else []
    states: dict[str, BreakerState] = {}
    for i, label in enumerate(labels):
        state, failures, opened = (_decode(v) for v in values[3 * i : 3 * i + 3])
        state = state or CLOSED
        states[label] = BreakerState(
            label,
            state,
            int(failures) if failures and failures.isdigit() else 0,
            datetime.fromtimestamp(int(opened), UTC)
            if opened and opened.isdigit() and state != CLOSED
            else None,
        )
    return states


def reset(redis: Redis, namespace: str, label: str) -> BreakerState:
    """Close one breaker fleet-wide: counters zeroed, any half-open probe lock dropped."""
    prefix = breaker_keys.scope_prefix(namespace, label)
    pipe = redis.pipeline(transaction=True)
    pipe.set(breaker_keys.pybreaker_key(prefix, "state"), CLOSED)
    pipe.set(breaker_keys.pybreaker_key(prefix, "fail_counter"), 0)
    pipe.set(breaker_keys.pybreaker_key(prefix, "success_counter"), 0)
    pipe.delete(breaker_keys.probe_key(prefix))
    pipe.execute()
    return BreakerState(label, CLOSED, 0, None)
