"""What the console needs at run time: the API's engine and Redis, and its own signing options."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from redis import Redis
from sqlalchemy.engine import Engine

from config.settings import Settings
from domain import jobs
from ingress.api import ApiState
from ingress.api.ratelimit import RateLimiter
from services import breaker_keys, fleet_counters


@dataclass(frozen=True, slots=True)
class ConsoleOptions:
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    session_seconds: int = 8 * 3600
    breaker_namespace: str = breaker_keys.DEFAULT_NAMESPACE
    refresh_seconds: int = 5
    # Set on a deployment served over HTTPS (the usual case behind a balancer); off for local HTTP.
    secure_cookies: bool = False
    base_path: str = "/console"
    # The broker whose queues the overview shows operators (None: no queue figures).
    rabbitmq_url: str | None = field(default=None, repr=False)
    # RabbitMQ's management API, when its plugin runs: unacked counts and the broker's own rates.
    management_url: str | None = field(default=None, repr=False)
    # Where the fleet's processes write their counts (services.fleet_counters).
    counters_namespace: str = fleet_counters.DEFAULT_NAMESPACE
    # Failed sign-ins per client address per window; past it, 429 until the window ends.
    sign_in_limit: int = 10
    sign_in_window_seconds: float = 300.0
    queues: tuple[str, ...] = (
        jobs.INBOUND_QUEUE, jobs.MEDIA_QUEUE, jobs.OUTBOUND_QUEUE, jobs.BULK_QUEUE, jobs.BILLING_QUEUE,
    )  # fmt: skip

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsoleOptions:
        return cls(
            secret=settings.console_secret.get_secret_value(),
            session_seconds=settings.console_session_seconds,
            rabbitmq_url=settings.rabbitmq_url,
            management_url=settings.rabbitmq_management_url,
            counters_namespace=settings.fleet_counters_namespace,
            secure_cookies=settings.console_secure_cookies,
            sign_in_limit=settings.console_sign_in_limit,
            sign_in_window_seconds=settings.console_sign_in_window_seconds,
        )


class ConsoleState:
    """The console shares the API's resources (opened and closed by the app's lifespan)."""

    def __init__(self, api: ApiState, options: ConsoleOptions) -> None:
        self.api = api
        self.options = options
        self._sign_in_limiter: tuple[Redis, RateLimiter] | None = None

    @property
    def sign_in_limiter(self) -> RateLimiter:
        """Failed sign-ins per client address: the API's limiter of unauthenticated requests, with
        the console's own limit and key space (`<namespace>:api:console-sign-in:<address>`)."""
        redis = self.redis
        if self._sign_in_limiter is None or self._sign_in_limiter[0] is not redis:
            limiter = RateLimiter(
                redis,
                limit=self.options.sign_in_limit,
                window_seconds=self.options.sign_in_window_seconds,
                namespace=self.api.options.redis_namespace,
                scope="console-sign-in",
            )
            self._sign_in_limiter = (redis, limiter)
        return self._sign_in_limiter[1]

    @property
    def engine(self) -> Engine:
        return self.api.resources.engine

    @property
    def redis(self) -> Redis:
        return self.api.resources.redis
