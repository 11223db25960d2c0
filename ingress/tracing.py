"""The ingress's tracing hook: OpenTelemetry's ASGI middleware, only when tracing is on."""

from __future__ import annotations

from starlette.types import ASGIApp

from services.telemetry import tracing

# Probes would fill traces with noise; the webhooks and the API are what a trace is for.
_EXCLUDED = "/healthz,/readyz"


def server_spans(app: ASGIApp) -> ASGIApp | None:
    """`app` wrapped in a SERVER span per request (W3C context read from the headers); None when off."""
    if not tracing.enabled():
        return None
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(app, excluded_urls=_EXCLUDED)
