"""What the API needs at run time, made in the app's lifespan (never at import).

The API does SQL, unlike the webhook path. It uses the sync SQLAlchemy engine in Starlette's
threadpool: the unit of work (tenant scope, outbox, enqueue after commit), the repositories and
the billing rules are all sync and shared with the workers, and one thread hop per request is
cheap next to the transaction it runs. Jobs go out through Dramatiq's RabbitMQ broker with
publisher confirms (thread-local channels), so a 202 means the job is on the broker or, should the
publish fail after commit, in the outbox for the sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dramatiq.brokers.rabbitmq import RabbitmqBroker
from prometheus_client import CollectorRegistry, Counter, Histogram
from redis import Redis
from sqlalchemy.engine import Engine

from config.settings import Settings, get_settings
from db.engine import create_db_engine
from domain.ports import JobPublisher
from ingress.api.errors import ApiError, ErrorCode
from ingress.api.ratelimit import RateLimiter
from services import fleet_counters
from services.publisher import BrokerJobPublisher
from services.queue_traffic import QueueTraffic
from services.telemetry.dramatiq_context import TraceContext


@dataclass(frozen=True, slots=True)
class ApiOptions:
    rate_limit: int = 600  # requests per key per window
    rate_window_seconds: float = 60.0
    # Requests failing authentication, per client address per window; past it, 429.
    unauthenticated_limit: int = 30
    unauthenticated_window_seconds: float = 60.0
    redis_namespace: str = "adsapp"
    max_body_bytes: int = 256 * 1024
    base_path: str = "/api/v1"


@dataclass
class ApiResources:
    engine: Engine
    redis: Redis
    jobs: JobPublisher
    limiter: RateLimiter
    options: ApiOptions
    owned: list[object] = field(default_factory=list)
    address_limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.address_limiter = RateLimiter(
            self.redis,
            limit=self.options.unauthenticated_limit,
            window_seconds=self.options.unauthenticated_window_seconds,
            namespace=self.options.redis_namespace,
            scope="unauthenticated",
        )

    def close(self) -> None:
        for thing in self.owned:
            closer = getattr(thing, "dispose", None) or getattr(thing, "close", None)
            if closer is not None:
                closer()


def build_resources(settings: Settings, options: ApiOptions) -> ApiResources:
    engine = create_db_engine(settings)
    redis = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    # TraceContext: the job carries the request's trace context to the worker that consumes it;
    # QueueTraffic counts what the API publishes, for the console's rates in.
    counters = fleet_counters.shared(settings.redis_url, settings.fleet_counters_namespace)
    broker = RabbitmqBroker(
        url=settings.rabbitmq_url, confirm_delivery=True, middleware=[TraceContext(), QueueTraffic(counters)]
    )
    jobs = BrokerJobPublisher(broker)
    limiter = RateLimiter(
        redis,
        limit=options.rate_limit,
        window_seconds=options.rate_window_seconds,
        namespace=options.redis_namespace,
    )
    return ApiResources(engine, redis, jobs, limiter, options, owned=[counters, jobs, redis, engine])


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter(
            "adsapp_api_requests_total",
            "API answers, by operation and status",
            ["operation", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "adsapp_api_request_seconds",
            "API request handling time, by operation",
            ["operation"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.limiter_unavailable = Counter(
            "api_rate_limiter_unavailable_total",
            "Requests let through unlimited because Redis could not be asked, by limit (key, address)",
            ["limit"],
            registry=registry,
        )


class ApiState:
    """The API's run-time state: `open()` in the lifespan's startup, `close()` in its shutdown.

    Pass `resources` to use ready-made ones (tests); `registry` to expose the API's metrics on
    the app's own Prometheus registry.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        options: ApiOptions | None = None,
        *,
        resources: ApiResources | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.options = options or (resources.options if resources else ApiOptions())
        self._settings = settings
        self._given = resources
        self._resources: ApiResources | None = None
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ApiMetrics(self.registry)

    def open(self) -> None:
        if self._resources is None:
            self._resources = self._given or build_resources(self._settings or get_settings(), self.options)

    def close(self) -> None:
        resources, self._resources = self._resources, None
        if resources is not None and resources is not self._given:
            resources.close()

    @property
    def resources(self) -> ApiResources:
        if self._resources is None:
            raise ApiError(ErrorCode.UNAVAILABLE, "The API is starting or stopping.")
        return self._resources
