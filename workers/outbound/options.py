"""Tuning of the outbound path, from the environment (prefix `OUTBOUND_`), read once at boot.

The defaults suit production; tests shorten the breaker's open period and the send lease, and
give each run a Redis namespace of its own so breakers and buckets of runs never mix.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis import Redis

from workers.graph import BreakerPolicy, BreakerRegistry, GraphClient, Pacer


class OutboundOptions(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTBOUND_", env_file=".env", extra="ignore")

    redis_namespace: str = "adsapp"
    breaker_fail_max: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=30.0, gt=0)
    api_breaker_fail_max: int = Field(default=20, ge=1)
    api_breaker_reset_seconds: float = Field(default=30.0, gt=0)
    pacing_burst_seconds: float = Field(default=1.0, gt=0)
    # How long a worker thread may wait for a send token before it re-enqueues the job instead.
    pace_max_wait_seconds: float = Field(default=2.0, ge=0)
    # Longer than any one send can take (timeouts and in-call retries included): a message still
    # `sending` after it was claimed this long ago has lost its worker mid-call.
    send_lease_seconds: float = Field(default=120.0, gt=0)
    # Sends one worker process has in flight at most (claimed and calling Meta), in all and per
    # number; the process's connection pool is as large. In flight ≈ rate × latency: a 1,000-mps
    # number at 250 ms needs about 250 across the fleet. The outbound group's thread count
    # (WORKER_THREADS) should be at least `in_flight`, each thread waiting on one send.
    in_flight: int = Field(default=256, ge=1)
    in_flight_per_number: int = Field(default=256, ge=1)
    # Postgres batches of the send path one process runs at once, for claims and for wamids each
    # (each batch the sends of every organization asking at that moment, in one transaction and
    # one round trip, on a pooled connection of its own): twice this should fit in
    # DATABASE_POOL_SIZE. One is the cheapest in CPU: the sends that ask while a batch runs
    # form the next one, so the batches grow with the load; more lets a slow round trip overlap
    # the next batch, at the price of smaller batches.
    db_batches: int = Field(default=1, ge=1)

    def breakers(self, redis: Redis) -> BreakerRegistry:
        return BreakerRegistry(
            redis,
            namespace=f"{self.redis_namespace}:graph:breaker",
            number_policy=BreakerPolicy(self.breaker_fail_max, self.breaker_reset_seconds),
            api_policy=BreakerPolicy(self.api_breaker_fail_max, self.api_breaker_reset_seconds),
        )

    def pacer(self, redis: Redis) -> Pacer:
        return Pacer(
            redis, namespace=f"{self.redis_namespace}:graph:pace", burst_seconds=self.pacing_burst_seconds
        )


class GraphAdapters:
    """The Graph API client, breakers and pacer of one process, made at boot and shared by threads."""

    def __init__(self, client: GraphClient, redis: Redis, options: OutboundOptions | None = None) -> None:
        self.options = options or OutboundOptions()
        self.client = client
        self.breakers = self.options.breakers(redis)
        self.pacer = self.options.pacer(redis)

    def close(self) -> None:
        self.client.close()
