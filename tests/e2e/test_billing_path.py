"""Stripe billing over real processes: Stripe-signed POSTs to the uvicorn ingress, RabbitMQ, a
`dramatiq workers.app` subprocess on the billing queue, and the rows it leaves in Postgres."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from config import Settings
from db import tables as t
from db.repos import billing as repo
from db.repos.organizations import create_organization
from db.uow import UnitOfWork
from devkit.processes import Process, start_ingress, start_worker, wait_for
from domain.billing.policy import RefusalCode
from tests.support import stripe_events as se

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SECRET = "whsec_e2e_billing"
T0 = se.BASE_TIME


@pytest.fixture(scope="module")
def ingress(settings: Settings) -> Iterator[str]:
    process, url = start_ingress({"STRIPE_WEBHOOK_SECRET": f"whsec_rotated_out,{SECRET}"})
    yield url
    assert process.stop() in (0, -15), process.log()[-3000:]


@pytest.fixture(scope="module")
def worker(settings: Settings) -> Iterator[Process]:
    # One thread, so events posted one after another are also processed in that order.
    process = start_worker(["billing"], processes=1, threads=1)
    yield process
    process.stop()


@pytest.fixture
def client(ingress: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ingress, timeout=10) as c:
        yield c


def post(client: httpx.Client, evt: dict[str, Any]) -> None:
    body = se.body_of(evt).encode()
    response = client.post(
        "/webhooks/stripe",
        content=body,
        headers={"content-type": "application/json", "stripe-signature": se.stripe_signature(body, SECRET)},
    )
    assert response.status_code == 200, response.text


def outcome(owner_engine: Engine, event_id: str) -> str | None:
    with owner_engine.connect() as conn:
        return conn.execute(
            sa.select(t.webhook_events.c.outcome).where(t.webhook_events.c.event_id == event_id)
        ).scalar()


def deliver(client: httpx.Client, owner_engine: Engine, worker: Process, evt: dict[str, Any]) -> str:
    post(client, evt)
    assert wait_for(lambda: outcome(owner_engine, evt["id"]) is not None, 20), worker.log()[-3000:]
    return str(outcome(owner_engine, evt["id"]))


def test_a_subscription_life_through_signed_webhooks(
    engine: Engine, owner_engine: Engine, client: httpx.Client, worker: Process
) -> None:
    with UnitOfWork(engine, system=True) as uow:
        org = create_organization(uow.conn, "e2e billing")
        uow.commit()
    customer, sub_id = se.new_id("cus"), se.new_id("sub")

    def sub(
        status: str, created: int, kind: str = "customer.subscription.updated", **kw: Any
    ) -> dict[str, Any]:
        return se.event(kind, se.subscription(sub_id, customer, status, **kw), created=created)

    def send(evt: dict[str, Any]) -> str:
        return deliver(client, owner_engine, worker, evt)

    # Stripe created the subscription before the checkout completed: it waits, attached to nobody.
    trial = sub(
        "trialing", T0, "customer.subscription.created", trial_end=T0 + 100, lookup_key="starter_monthly"
    )
    assert send(trial) == "unknown_customer"
    checkout = se.checkout_session(customer, sub_id, client_reference_id=str(org))
    assert send(se.event("checkout.session.completed", checkout, created=T0 + 1)) == "applied"
    assert outcome(owner_engine, trial["id"]) == "applied"

    paid = se.event("invoice.paid", se.invoice(customer, sub_id, period_start=T0 + 100), created=T0 + 100)
    assert send(paid) == "applied"
    post(client, paid)  # Stripe delivers it again
    failed = se.event("invoice.payment_failed", se.invoice(customer, sub_id, status="open"), created=T0 + 200)
    assert send(failed) == "applied"
    state = _state(engine, org)
    assert (state.subscription_status, state.plan, state.stripe_customer_id) == (
        "past_due",
        "starter",
        customer,
    )

    upgrade = sub("active", T0 + 300, lookup_key="pro_monthly")
    assert send(upgrade) == "applied"
    assert send(sub("past_due", T0 + 250, lookup_key="starter_monthly")) == "stale"
    assert send(sub("canceled", T0 + 400, "customer.subscription.deleted", canceled_at=T0 + 400)) == "applied"
    assert send(sub("active", T0 + 401)) == "ended"

    stranger = se.subscription(se.new_id("sub"), se.new_id("cus"), "active")
    assert send(se.event("customer.subscription.updated", stranger)) == "unknown_customer"
    assert send(se.event("customer.tax_id.created", {"id": "txi_1", "object": "tax_id"})) == "unhandled"

    state = _state(engine, org)
    assert (state.subscription_status, state.plan) == ("canceled", "pro")
    with UnitOfWork(engine, organization_id=org) as uow:
        assert repo.check_send_allowed(uow.conn, org).code is RefusalCode.SUBSCRIPTION_CANCELED
        applied_paid = uow.conn.execute(
            sa.select(sa.func.count())
            .select_from(t.event_store)
            .where(t.event_store.c.payload["stripe_event_id"].astext == paid["id"])
        ).scalar_one()
    assert applied_paid == 1


def test_a_forged_signature_changes_nothing(
    engine: Engine, owner_engine: Engine, client: httpx.Client, worker: Process
) -> None:
    evt = se.event("customer.subscription.updated", se.subscription("sub_x", "cus_x", "active"))
    body = se.body_of(evt).encode()
    response = client.post(
        "/webhooks/stripe",
        content=body,
        headers={
            "content-type": "application/json",
            "stripe-signature": se.stripe_signature(body, "whsec_forged"),
        },
    )
    assert response.status_code in (400, 401)
    assert outcome(owner_engine, evt["id"]) is None


def _state(engine: Engine, org: uuid.UUID) -> Any:
    with UnitOfWork(engine, organization_id=org) as uow:
        return uow.conn.execute(sa.select(t.organizations).where(t.organizations.c.id == org)).one()
