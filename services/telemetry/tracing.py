"""OpenTelemetry for the fleet: on only when an exporter is configured, and free when it is not.

`configure_tracing()` runs once at process start. With `OTEL_EXPORTER_OTLP_ENDPOINT` set (or an
exporter passed, as tests do) it installs a tracer provider exporting over OTLP/HTTP and the
instrumentations for httpx (the Graph API calls), SQLAlchemy (the statements) and redis. Otherwise
nothing is installed: OpenTelemetry's API stays a no-op, `enabled()` is False, and the hook points
(the ingress's ASGI wrapper, the trace context in published messages, the consumer span) skip
their work on that one check.

Trace context travels in W3C form (`traceparent`, `tracestate`) in the Dramatiq message's options
under `trace_context`, which Dramatiq keeps across retries and delays.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

log = logging.getLogger(__name__)

OPTION: Final = "trace_context"
_state: dict[str, bool] = {"enabled": False}
_provider: list[TracerProvider] = []


def enabled() -> bool:
    return _state["enabled"]


@dataclass
class Tracing:
    """What `configure_tracing` installed; `shutdown()` flushes spans and removes the instrumentations."""

    provider: TracerProvider

    def shutdown(self) -> None:
        _state["enabled"] = False
        _uninstrument()
        self.provider.force_flush()


def configure_tracing(
    service_name: str, endpoint: str | None, *, exporter: SpanExporter | None = None
) -> Tracing | None:
    """Turn tracing on for this process if `endpoint` or `exporter` is given; None when it stays off."""
    if exporter is None and not endpoint:
        return None
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor: SimpleSpanProcessor | BatchSpanProcessor = BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{str(endpoint).rstrip('/')}/v1/traces")
        )
    else:
        processor = SimpleSpanProcessor(exporter)
    if _provider:
        # OpenTelemetry allows one global provider per process: later configurations add processors.
        provider = _provider[0]
    else:
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
        trace.set_tracer_provider(provider)
        _provider.append(provider)
    provider.add_span_processor(processor)
    _instrument()
    _state["enabled"] = True
    log.info("tracing on", extra={"service": service_name, "otlp_endpoint": endpoint})
    return Tracing(provider)


def _instrument() -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    for instrumentor in (HTTPXClientInstrumentor(), RedisInstrumentor(), SQLAlchemyInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()


def _uninstrument() -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    for instrumentor in (HTTPXClientInstrumentor(), RedisInstrumentor(), SQLAlchemyInstrumentor()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


def carrier(span: trace.Span | None = None) -> dict[str, str] | None:
    """The trace context (of `span`, else the current one) as W3C headers for a message; None when off."""
    if not _state["enabled"]:
        return None
    headers: dict[str, str] = {}
    propagate.inject(headers, context=trace.set_span_in_context(span) if span is not None else None)
    return headers or None


def start_producer(queue: str, message_id: str) -> trace.Span | None:
    """A PRODUCER span `publish <queue>` under the current span (the caller ends it); None when off."""
    if not _state["enabled"]:
        return None
    return trace.get_tracer("adsapp.publish").start_span(
        f"publish {queue}",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.destination.name": queue,
            "messaging.message.id": message_id,
        },
    )


def end_failed(span: trace.Span, reason: str) -> None:
    span.set_status(trace.Status(trace.StatusCode.ERROR, reason))
    span.end()


def extract(headers: Mapping[str, str] | None) -> context.Context:
    """The context a message carried (an empty one if it carried none)."""
    return propagate.extract(dict(headers or {}))
