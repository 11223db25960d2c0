"""Trace context across RabbitMQ: a Dramatiq middleware for publishers and consumers alike.

On enqueue it writes the current W3C trace context into the message's options; on consume it
starts a CONSUMER span `consume <queue>` as a child of that context and keeps it current in the
worker thread until the message is done, so every span the handler makes (statements, the commit,
the Graph API call) joins the trace that began with the webhook or API request. Off, each hook is
one flag check.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name
from opentelemetry import context, trace

from services.telemetry import tracing

_tracer = trace.get_tracer("adsapp.dramatiq")
# The span and context token of the message a worker thread is processing, by message id.
_SPAN: str = "_adsapp_trace_span"


class TraceContext(dramatiq.Middleware):
    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int) -> None:
        if not tracing.enabled() or tracing.OPTION in message.options:
            return  # a retry or a delayed copy keeps the context it was first sent with
        headers = tracing.carrier()
        if headers:
            message.options[tracing.OPTION] = headers

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if not tracing.enabled():
            return
        parent = tracing.extract(message.options.get(tracing.OPTION))
        queue = q_name(message.queue_name)
        span = _tracer.start_span(
            f"consume {queue}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.destination.name": queue,
                "messaging.message.id": message.message_id,
                "messaging.dramatiq.actor": message.actor_name,
                "adsapp.request_id": str(message.kwargs.get("request_id") or ""),
            },
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        setattr(message, _SPAN, (span, token))

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        held = getattr(message, _SPAN, None)
        if held is None:
            return
        span, token = held
        setattr(message, _SPAN, None)
        if exception is not None:
            span.record_exception(exception)
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exception).__name__))
        span.end()
        context.detach(token)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.after_process_message(broker, message)
