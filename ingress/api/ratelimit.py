"""Request limits in Redis (fixed windows), shared by every ingress process: one per API key, and
one per client address for requests that fail authentication.

Every authenticated answer carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
`X-RateLimit-Reset` (seconds until the window resets); a 429 adds `Retry-After`.

When Redis cannot be reached, both limits are lifted (fail open), logged and counted
(`api_rate_limiter_unavailable_total{limit}`). The per-key limit protects capacity, and refusing
every request because the limiter is down would turn a Redis blip into an outage of the API. The
per-address limit guards against guessing keys, which 256-bit keys make hopeless anyway, and
unauthenticated requests are still refused (401) before their body is read.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from uuid import UUID

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""


@dataclass(frozen=True, slots=True)
class RateState:
    limit: int
    remaining: int
    reset_seconds: int
    allowed: bool

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


class RateLimiter:
    def __init__(
        self, redis: Redis, *, limit: int, window_seconds: float, namespace: str, scope: str = "rate"
    ) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("limit and window_seconds must be positive")
        self._limit = limit
        self._window_ms = int(window_seconds * 1000)
        self._prefix = f"{namespace}:api:{scope}"
        self._redis = redis
        self._script = redis.register_script(_HIT)

    def hit(self, key_id: UUID | str) -> RateState | None:
        """Count one request for the key (an API key id, or a client address); None when Redis
        could not be asked."""
        try:
            count, ttl_ms = self._script(keys=[f"{self._prefix}:{key_id}"], args=[self._window_ms])
        except RedisError:
            log.warning("rate limiter unavailable; request let through", exc_info=True)
            return None
        return self._state(int(count), int(ttl_ms))

    def peek(self, key_id: UUID | str) -> RateState | None:
        """The key's state without counting a request: `allowed` is False once the window's count
        has passed the limit (a caller that must refuse before doing the work asks this first)."""
        key = f"{self._prefix}:{key_id}"
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(key)
            pipe.pttl(key)
            count, ttl_ms = pipe.execute()
        except RedisError:
            log.warning("rate limiter unavailable; request let through", exc_info=True)
            return None
        ttl = int(ttl_ms)
        return self._state(int(count or 0), ttl if ttl > 0 else self._window_ms)

    def _state(self, count: int, ttl_ms: int) -> RateState:
        return RateState(
            limit=self._limit,
            remaining=max(0, self._limit - count),
            reset_seconds=max(1, math.ceil(ttl_ms / 1000)),
            allowed=count <= self._limit,
        )
