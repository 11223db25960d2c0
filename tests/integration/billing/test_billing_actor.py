"""The billing actor behind the real broker: messages published to the test vhost the way the
ingress publishes them, consumed by an in-process Dramatiq worker, landing in Postgres."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
import sqlalchemy as sa
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine

from config import Settings
from db import tables as t
from domain import jobs
from domain.ports import Job
from services.publisher import BrokerJobPublisher
from tests.support import stripe_events as se
from tests.support.billing import org_row, webhook_row
from workers import resources
from workers.broker import build_broker

pytestmark = pytest.mark.integration

T0 = se.BASE_TIME


@pytest.fixture(scope="module")
def broker(settings: Settings) -> Iterator[RabbitmqBroker]:
    broker = build_broker(settings)
    previous = dramatiq.get_broker() if dramatiq.broker.global_broker is not None else None
    dramatiq.set_broker(broker)
    from workers.actors import billing as billing_actors

    # Declared here too in case the module was imported (and bound) under another broker earlier.
    broker.declare_actor(billing_actors.process_stripe_event)
    resources.install(resources.build(broker, settings))
    worker = dramatiq.Worker(broker, worker_threads=1, queues={jobs.BILLING_QUEUE})
    worker.start()
    try:
        yield broker
    finally:
        worker.stop()  # closes the installed resources (ResourcesMiddleware)
        resources.install(None)
        broker.close()
        if previous is not None:
            dramatiq.set_broker(previous)


def publish(broker: RabbitmqBroker, body: str) -> None:
    """What the ingress puts on the queue: the raw body, when it arrived, the request id."""
    job = Job(
        queue=jobs.BILLING_QUEUE,
        actor=jobs.STRIPE_EVENT_ACTOR,
        args=[body],
        kwargs={"received_at": time.time(), "request_id": f"req-{uuid.uuid4().hex[:8]}"},
    )
    BrokerJobPublisher(broker).publish(job)


def settle(broker: RabbitmqBroker, done: Callable[[], bool]) -> None:
    broker.join(jobs.BILLING_QUEUE, min_successes=2, idle_time=50, timeout=20_000)
    deadline = time.monotonic() + 20
    while not done():  # join does not wait for the message in hand; its commit follows shortly
        assert time.monotonic() < deadline, "the worker did not finish"
        time.sleep(0.05)


def sample(event_type: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "adsapp_billing_stripe_events_total", {"event_type": event_type, "outcome": outcome}
    )
    return value or 0.0


def test_events_through_the_broker_are_applied_once(
    broker: RabbitmqBroker, engine: Engine, owner_engine: Engine, new_org: Callable[[], uuid.UUID]
) -> None:
    org = new_org()
    customer, sub_id = se.new_id("cus"), se.new_id("sub")
    checkout = se.event(
        "checkout.session.completed",
        se.checkout_session(customer, sub_id, client_reference_id=str(org)),
        created=T0,
    )
    trial = se.event(
        "customer.subscription.created",
        se.subscription(sub_id, customer, "trialing", trial_end=T0 + 100),
        created=T0,
    )
    paid = se.event("invoice.paid", se.invoice(customer, sub_id, period_start=T0 + 100), created=T0 + 100)
    duplicates_before = sample("invoice.paid", "duplicate")
    for evt in (checkout, trial, paid, paid):
        publish(broker, se.body_of(evt))

    def finished() -> bool:
        row = webhook_row(owner_engine, paid["id"])
        return (
            row is not None
            and row.outcome is not None
            and sample("invoice.paid", "duplicate") > duplicates_before
        )

    settle(broker, finished)
    row = org_row(engine, org)
    assert (row.stripe_customer_id, row.subscription_status, row.plan) == (customer, "active", "pro")
    assert webhook_row(owner_engine, paid["id"]).received_at is not None
    assert sample("invoice.paid", "duplicate") == duplicates_before + 1
    assert sample("invoice.paid", "applied") >= 1


def dead_letter_row(owner_engine: Engine, marker: str) -> Any:
    with owner_engine.connect() as conn:
        return conn.execute(
            sa.select(t.dead_letters).where(
                t.dead_letters.c.actor == jobs.STRIPE_EVENT_ACTOR,
                t.dead_letters.c.args[0].astext.contains(marker),
            )
        ).one_or_none()


def test_a_malformed_event_is_dead_lettered_without_retries(broker: RabbitmqBroker) -> None:
    dead_before = broker.get_queue_message_counts(jobs.BILLING_QUEUE)[-1]
    malformed_before = sample("other", "malformed")
    publish(broker, '{"object": "event", "id": "evt_' + uuid.uuid4().hex + '", "type": "invoice.paid"}')
    settle(
        broker,
        lambda: (
            broker.get_queue_message_counts(jobs.BILLING_QUEUE)[-1] > dead_before
            and sample("other", "malformed") > malformed_before
        ),
    )
    # Once, and straight to billing.XQ: nothing waits in the delay queue for a retry.
    assert sample("other", "malformed") == malformed_before + 1
    assert broker.get_queue_message_counts(jobs.BILLING_QUEUE)[:-1] == (0, 0)


def test_a_malformed_event_leaves_a_dead_letter_row(broker: RabbitmqBroker, owner_engine: Engine) -> None:
    marker = uuid.uuid4().hex
    publish(broker, '{"object": "event", "id": "evt_' + marker + '", "type": "invoice.paid"}')
    deadline = time.monotonic() + 2
    while dead_letter_row(owner_engine, marker) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    row = dead_letter_row(owner_engine, marker)
    assert row is not None
    assert (row.queue, row.attempts) == (jobs.BILLING_QUEUE, 1)
    assert row.error.startswith("InvalidPayload")
