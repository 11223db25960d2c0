"""Trace context through the real RabbitMQ, with OpenTelemetry's in-memory span exporter: a job
published inside a span is consumed under a child span, and the handler's commit joins the trace."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import dramatiq
import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.engine import Engine

from config import Settings
from db.uow import UnitOfWork
from ingress.message import encode_message
from services.telemetry import tracing
from services.telemetry.dramatiq_context import TraceContext
from workers.consumer import GatheredAckRabbitmqBroker

pytestmark = pytest.mark.integration


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    handle = tracing.configure_tracing("adsapp-test", None, exporter=exporter)
    assert handle is not None
    yield exporter
    handle.shutdown()
    exporter.clear()


def _run(broker: dramatiq.Broker, done: threading.Event) -> None:
    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        assert done.wait(30), "the job was not processed"
    finally:
        worker.stop()
        broker.close()


def test_publish_consume_and_commit_share_one_trace(
    settings: Settings, engine: Engine, spans: InMemorySpanExporter
) -> None:
    broker = GatheredAckRabbitmqBroker(
        url=settings.rabbitmq_url, confirm_delivery=True, middleware=[TraceContext()]
    )
    queue = f"trace_{uuid.uuid4().hex[:8]}"
    done = threading.Event()

    @dramatiq.actor(broker=broker, queue_name=queue, actor_name=f"{queue}_actor")
    def handler(n: int) -> None:
        with UnitOfWork(engine, system=True) as uow:
            uow.conn.execute(sa.text("SELECT 1"))
            uow.commit()
        done.set()

    with trace.get_tracer("test").start_as_current_span("request") as request:
        handler.send(1)
    _run(broker, done)

    by_name = {s.name: s for s in spans.get_finished_spans()}
    consume, commit = by_name[f"consume {queue}"], by_name["db.commit"]
    trace_id = request.get_span_context().trace_id
    assert consume.context.trace_id == commit.context.trace_id == trace_id
    assert consume.parent is not None and consume.parent.span_id == request.get_span_context().span_id
    assert commit.parent is not None and commit.parent.span_id == consume.context.span_id
    assert consume.kind == trace.SpanKind.CONSUMER
    assert consume.attributes is not None and consume.attributes["messaging.destination.name"] == queue


def test_the_ingress_wire_format_carries_the_context(settings: Settings, spans: InMemorySpanExporter) -> None:
    """The webhook path encodes messages itself (no Dramatiq on the event loop): same options key."""
    broker = GatheredAckRabbitmqBroker(
        url=settings.rabbitmq_url, confirm_delivery=True, middleware=[TraceContext()]
    )
    queue = f"trace_{uuid.uuid4().hex[:8]}"
    done = threading.Event()

    @dramatiq.actor(broker=broker, queue_name=queue, actor_name=f"{queue}_actor")
    def handler(body: str, received_at: float, request_id: str) -> None:
        done.set()

    span = tracing.start_producer(queue, "m-1")
    assert span is not None
    raw = encode_message(
        queue_name=queue, actor_name=f"{queue}_actor", body="{}", received_at=0.0, request_id="req-7",
        message_id=uuid.uuid4().hex, trace_context=tracing.carrier(span),
    )  # fmt: skip
    span.end()
    broker.declare_queue(queue)
    broker.enqueue(dramatiq.Message.decode(raw))
    _run(broker, done)

    consume = next(s for s in spans.get_finished_spans() if s.name == f"consume {queue}")
    assert consume.context.trace_id == span.get_span_context().trace_id
    assert consume.parent is not None and consume.parent.span_id == span.get_span_context().span_id
    assert consume.attributes is not None and consume.attributes["adsapp.request_id"] == "req-7"


def test_off_means_no_context_and_no_spans(settings: Settings) -> None:
    assert not tracing.enabled()
    assert tracing.carrier() is None
    assert tracing.start_producer("inbound", "m") is None
    message = dramatiq.Message(queue_name="q", actor_name="a", args=(), kwargs={}, options={})
    TraceContext().before_enqueue(None, message, 0)
    assert message.options == {}
