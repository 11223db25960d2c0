"""What the console needs at run time: the API's engine and Redis, and its own signing options."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from redis import Redis
from sqlalchemy.engine import Engine

from config.settings import Settings
from domain import jobs
from ingress.api import ApiState
from services import breaker_keys


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
    queues: tuple[str, ...] = (
        jobs.INBOUND_QUEUE, jobs.MEDIA_QUEUE, jobs.OUTBOUND_QUEUE, jobs.BULK_QUEUE, jobs.BILLING_QUEUE,
    )  # fmt: skip

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsoleOptions:
        return cls(
            secret=settings.console_secret.get_secret_value(),
            session_seconds=settings.console_session_seconds,
            rabbitmq_url=settings.rabbitmq_url,
            secure_cookies=settings.console_secure_cookies,
        )


class ConsoleState:
    """The console shares the API's resources (opened and closed by the app's lifespan), and reads
    the ingress process's own request counters from `registry` when given."""

    def __init__(
        self, api: ApiState, options: ConsoleOptions, registry: CollectorRegistry | None = None
    ) -> None:
        self.api = api
        self.options = options
        self.registry = registry

    def webhook_answers(self) -> dict[str, int]:
        """This process's webhook answers since it started, by status class ('2xx', '4xx', '5xx')."""
        classes: dict[str, int] = {}
        if self.registry is None:
            return classes
        for family in self.registry.collect():
            # The family of `adsapp_ingress_requests_total` (ingress.metrics), named without `_total`.
            if family.name != "adsapp_ingress_requests":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("route", "").startswith("/webhooks/"):
                    status_class = sample.labels.get("status", "?")[:1] + "xx"
                    classes[status_class] = classes.get(status_class, 0) + int(sample.value)
        return classes

    @property
    def engine(self) -> Engine:
        return self.api.resources.engine

    @property
    def redis(self) -> Redis:
        return self.api.resources.redis
