"""Which Graph API circuit breakers are open, read from their shared state in Redis.

Breakers keep pybreaker's `CircuitRedisStorage` layout under `<namespace>:<scope>:pybreaker:state`,
where scope is `global` (the whole API) or `number:<phone_number_id>`. Reading is a SCAN, so it
is for gauges and operator views, not for the send path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from redis import Redis

OPEN: Final = "open"
HALF_OPEN: Final = "half-open"
_SUFFIX: Final = ":pybreaker:state"


@dataclass(frozen=True, slots=True)
class BreakerState:
    scope: str  # "global" or "number:<phone_number_id>"
    state: str  # pybreaker's name: closed, open, half-open


def breaker_states(redis: Redis, namespace: str) -> list[BreakerState]:
    """Every breaker that has state in Redis under `namespace` (`adsapp:graph:breaker`), by scope."""
    prefix = f"{namespace}:"
    keys = sorted(redis.scan_iter(match=f"{prefix}*{_SUFFIX}", count=1000))
    if not keys:
        return []
    values = redis.mget(keys)
    found = []
    for key, value in zip(keys, values, strict=True):
        if value is None:
            continue
        name = key.decode() if isinstance(key, bytes) else str(key)
        state = value.decode() if isinstance(value, bytes) else str(value)
        found.append(BreakerState(name[len(prefix) : -len(_SUFFIX)], state))
    return found
