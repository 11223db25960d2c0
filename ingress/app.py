"""The ingress application: `uvicorn ingress.app:app`, or `create_app(...)` with parts swapped in.

Nothing here opens a connection at import; the lifespan opens the broker connection and the Redis
client, and on shutdown lets in-flight publishes get their confirms before closing them.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Final

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config.logging import configure_logging
from config.settings import Settings, get_settings
from domain import jobs
from ingress.api import ApiState, api_mount
from ingress.console import ConsoleOptions, ConsoleState, console_mount
from ingress.health import (
    Probe,
    Readiness,
    healthz,
    libpq_url,
    postgres_probe,
    rabbitmq_probe,
    readyz_endpoint,
    redis_probe,
)
from ingress.metrics import Metrics
from ingress.payload import check_stripe_shape, check_whatsapp_shape
from ingress.publisher import Publisher, RabbitPublisher
from ingress.signatures import StripeVerifier, WhatsAppVerifier
from ingress.tracing import server_spans
from ingress.webhooks import WebhookRoute, WebhookSource
from services import fleet_counters
from services.fleet_counters import Counts
from services.telemetry import tracing

logger = logging.getLogger(__name__)

WHATSAPP_PATH: Final = "/webhooks/whatsapp"
STRIPE_PATH: Final = "/webhooks/stripe"
_ROUTE_LABELS: Final = frozenset({WHATSAPP_PATH, STRIPE_PATH, "/healthz", "/readyz"})


class RequestMetrics:
    """Counts every answer by route and status; unknown paths share one label to bound cardinality."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in _ROUTE_LABELS else "unmatched"
        metrics = self._metrics

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                metrics.count_request(route, message["status"])
            await send(message)

        await self._app(scope, receive, counting_send)


class IngressApp(Starlette):
    """Starlette, with the two webhook POST routes dispatched before the router and middleware.

    They are raw ASGI endpoints that count their own answers; skipping the routing and middleware
    layers is a measurable share of a request that otherwise costs tens of microseconds.
    """

    webhook_posts: dict[str, WebhookRoute]
    # OpenTelemetry's ASGI middleware around `dispatch`, when tracing is on (ingress.tracing).
    traced: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.traced is not None:
            await self.traced(scope, receive, send)
            return
        await self.dispatch(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self.webhook_posts.get(scope["path"])
            if route is not None:
                await route(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    publisher: Publisher | None = None,
    probes: Mapping[str, Probe] | None = None,
    configure_logs: bool = True,
    counters: Counts | None = None,
) -> IngressApp:
    """The ingress app. `publisher` and `probes` replace the real broker and dependency checks;
    `counters`, the fleet-wide counts of webhook answers and publishes (this process's shared ones)."""
    settings = settings or get_settings()
    metrics = Metrics()
    # The process's shared counters are closed (their last counts written) with the app; given ones
    # belong to the caller.
    shared = fleet_counters.shared(settings.redis_url, settings.fleet_counters_namespace)
    owned_counts = shared if counters is None else None
    counts: Counts = counters if counters is not None else shared
    if publisher is None:
        publisher = RabbitPublisher(
            settings.rabbitmq_url,
            queues=(jobs.INBOUND_QUEUE, jobs.BILLING_QUEUE),
            confirm_timeout=settings.publish_timeout_seconds,
            reconnect_interval=settings.rabbitmq_reconnect_interval_seconds,
        )
    active_publisher = publisher
    readiness = Readiness({}, settings.readiness_timeout_seconds)
    # /api/v1 does SQL (unlike the webhook path); its engine, Redis and broker connect lazily.
    api = ApiState(settings, registry=metrics.registry)
    console = ConsoleState(api, ConsoleOptions.from_settings(settings))

    def route(source: WebhookSource, path: str, verify_token: str | None = None) -> WebhookRoute:
        return WebhookRoute(
            source,
            publisher=active_publisher,
            metrics=metrics,
            max_body_bytes=settings.max_body_bytes,
            max_json_depth=settings.max_json_depth,
            path=path,
            verify_token=verify_token,
            counters=counts,
        )

    whatsapp = route(
        WebhookSource(
            name="whatsapp",
            queue_name=jobs.INBOUND_QUEUE,
            actor_name=jobs.WHATSAPP_DELIVERY_ACTOR,
            signature_header=b"x-hub-signature-256",
            verifier=WhatsAppVerifier([s.get_secret_value() for s in settings.whatsapp_app_secret]),
            check_shape=check_whatsapp_shape,
        ),
        WHATSAPP_PATH,
        verify_token=settings.whatsapp_verify_token.get_secret_value(),
    )
    stripe = route(
        WebhookSource(
            name="stripe",
            queue_name=jobs.BILLING_QUEUE,
            actor_name=jobs.STRIPE_EVENT_ACTOR,
            signature_header=b"stripe-signature",
            verifier=StripeVerifier([s.get_secret_value() for s in settings.stripe_webhook_secret]),
            check_shape=check_stripe_shape,
        ),
        STRIPE_PATH,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if configure_logs:
            configure_logging(settings.log_level)
        redis: Redis | None = None
        if probes is None:
            redis = Redis.from_url(
                settings.redis_url,
                socket_connect_timeout=settings.readiness_timeout_seconds,
                socket_timeout=settings.readiness_timeout_seconds,
            )
            readiness.set_probes(
                {
                    "rabbitmq": rabbitmq_probe(active_publisher),
                    "postgres": postgres_probe(
                        libpq_url(settings.sqlalchemy_url), settings.readiness_timeout_seconds
                    ),
                    "redis": redis_probe(redis),
                }
            )
        else:
            readiness.set_probes(probes)
        await active_publisher.start()
        api.open()
        # Everything built so far lives as long as the process: keep it out of the collector's
        # full passes, which would otherwise walk it all and stall every in-flight request.
        gc.collect()
        gc.freeze()
        logger.info("ingress started", extra={"max_body_bytes": settings.max_body_bytes})
        try:
            yield
        finally:
            await active_publisher.close(drain_timeout=settings.publish_timeout_seconds)
            api.close()
            if owned_counts is not None:
                owned_counts.close()
            if redis is not None:
                await redis.aclose()
            logger.info("ingress stopped")

    app = IngressApp(
        routes=[
            Route(WHATSAPP_PATH, whatsapp, methods=["GET", "POST"]),
            Route(STRIPE_PATH, stripe, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz_endpoint(readiness), methods=["GET"]),
            api_mount(api),
            console_mount(console),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.webhook_posts = {WHATSAPP_PATH: whatsapp, STRIPE_PATH: stripe}
    app.traced = server_spans(app.dispatch)
    app.state.metrics = metrics
    app.state.publisher = publisher
    app.state.readiness = readiness
    return app


tracing.configure_tracing(
    get_settings().otel_service_name or "adsapp-ingress", get_settings().otel_exporter_otlp_endpoint
)
app = create_app()
