"""Broadcasts as they run: the bulk and outbound worker groups as real Dramatiq processes on the
real broker, the fake Graph API over HTTP. Every recipient is sent exactly once, through the send
path's own `send_message` job, and a killed bulk worker neither loses nor repeats anything."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from sqlalchemy.engine import Engine

from config import Settings
from db.tables import bulk_job_items, messages
from db.uow import UnitOfWork
from devkit.processes import Process, start_scheduler, start_worker, wait_for
from devkit.tenants import TEMPLATE, Tenant, recipient
from services import bulk, sends
from services.publisher import BrokerJobPublisher
from tests.support.bulk import bulk_tenant, template_components
from tests.support.fake_graph import RunningFakeGraph, running_fake_graph

pytestmark = pytest.mark.integration

COMPONENTS = template_components(body=("Ann", "A1"), button="A1")


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningFakeGraph]:
    with running_fake_graph() as running:
        yield running


@pytest.fixture(scope="module")
def env(settings: Settings, fake: RunningFakeGraph) -> dict[str, str]:
    return {
        "GRAPH_API_URL": fake.url,
        "OUTBOUND_REDIS_NAMESPACE": f"adsapp-test:{uuid.uuid4().hex}",
        "OUTBOUND_PACING_BURST_SECONDS": "0.05",
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture(scope="module")
def outbound(env: dict[str, str]) -> Iterator[Process]:
    process = start_worker(["outbound"], processes=1, threads=16, env=env, timeout=60)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def bulk_worker(env: dict[str, str], outbound: Process) -> Iterator[Process]:
    process = start_worker(["bulk"], processes=1, threads=4, env=env, timeout=60)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def ports(settings: Settings, engine: Engine) -> Iterator[bulk.BulkPorts]:
    publisher = BrokerJobPublisher(
        RabbitmqBroker(url=settings.rabbitmq_url, confirm_delivery=True, middleware=[])
    )
    yield bulk.BulkPorts(engine, publisher)
    publisher.close()


def plan(
    ports: bulk.BulkPorts, tenant: Tenant, to: list[str], components_for: dict[str, Any] | None = None
) -> UUID:
    own = components_for or {}
    recipients = [bulk.Recipient(wa_id=w, components=own.get(w)) for w in to]
    job = bulk.plan_broadcast(
        ports, tenant.organization_id,
        bulk.BroadcastPlan("order_update", "en_US", COMPONENTS, recipients=recipients), None,
    )  # fmt: skip
    return job.id


def summary(engine: Engine, tenant: Tenant, job_id: UUID) -> bulk.JobSummary:
    return bulk.get_job(engine, tenant.organization_id, job_id)


def wait_finished(engine: Engine, tenant: Tenant, job_id: UUID, timeout: float = 90.0) -> bulk.JobSummary:
    assert wait_for(lambda: summary(engine, tenant, job_id).status in ("completed", "completed_with_errors",
                                                                      "cancelled"), timeout, 0.25)  # fmt: skip
    return summary(engine, tenant, job_id)


def sends_by_recipient(fake: RunningFakeGraph, number: str) -> Counter[str]:
    return Counter(s.to for s in list(fake.state.sends) if s.phone_number_id == number)


def wamids(engine: Engine, tenant: Tenant, job_id: UUID) -> dict[str, str | None]:
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        rows = uow.conn.execute(
            sa.select(bulk_job_items.c.recipient, messages.c.wamid)
            .select_from(bulk_job_items.join(messages, messages.c.id == bulk_job_items.c.message_id))
            .where(bulk_job_items.c.bulk_job_id == job_id)
        ).all()
    return {r.recipient: r.wamid for r in rows}


def test_a_1000_recipient_broadcast_sends_each_once_with_exact_counts(
    engine: Engine, fake: RunningFakeGraph, bulk_worker: Process, ports: bulk.BulkPorts
) -> None:
    tenant = bulk_tenant(engine, mps=250)
    tenant.templates([TEMPLATE])
    opted_out = [tenant.contact(opted_out=True) for _ in range(10)]
    good = [recipient() for _ in range(985)]
    bad_vars = [recipient() for _ in range(5)]
    job_id = plan(ports, tenant, good + opted_out + bad_vars,
                  components_for={w: [{"type": "body", "parameters": []}] for w in bad_vars})  # fmt: skip
    final = wait_finished(engine, tenant, job_id)
    assert final.status == "completed_with_errors"
    c = final.counts
    assert (c.total, c.succeeded, c.failed, c.skipped, c.cancelled, c.pending) == (1000, 985, 0, 15, 0, 0)
    sent = sends_by_recipient(fake, tenant.number)
    assert set(sent) == set(good) and set(sent.values()) == {1}
    recorded = wamids(engine, tenant, job_id)
    assert set(recorded) == set(good)
    assert {s.wamid for s in fake.state.sends if s.phone_number_id == tenant.number} == set(recorded.values())
    skipped = bulk.list_items(
        engine, tenant.organization_id, job_id, after_seq=None, limit=100, status="skipped"
    )
    assert Counter(i.error_code for i in skipped.rows) == {
        "contact_opted_out": 10,
        "template_parameters_mismatch": 5,
    }


def test_a_small_job_of_another_tenant_finishes_while_a_big_one_runs_which_is_then_cancelled(
    engine: Engine, fake: RunningFakeGraph, bulk_worker: Process, ports: bulk.BulkPorts
) -> None:
    big, small = bulk_tenant(engine, mps=50), bulk_tenant(engine, mps=50)
    for t in (big, small):
        t.templates([TEMPLATE])
    big_id = plan(ports, big, [recipient() for _ in range(1000)])  # 20 s at 50 mps
    assert wait_for(lambda: summary(engine, big, big_id).counts.succeeded > 0, 30, 0.1)
    small_id = plan(ports, small, [recipient() for _ in range(10)])
    done = wait_finished(engine, small, small_id, timeout=30)
    assert done.status == "completed" and done.counts.succeeded == 10
    assert summary(engine, big, big_id).status == "running"

    # An interactive send on the busy number waits behind a few chunks at most, not the campaign.
    to = recipient()
    body = {"messaging_product": "whatsapp", "type": "template",
            "template": {"name": "order_update", "language": {"code": "en_US"}, "components": COMPONENTS}}  # fmt: skip
    accepted = sends.accept_send(
        sends.SendPorts(engine, ports.jobs), big.organization_id,
        sends.OutgoingMessage(to=to, type="template", body=body), None,
    )  # fmt: skip
    assert wait_for(lambda: big.message(accepted.message_id)["status"] == "sent", 30, 0.1)
    assert summary(engine, big, big_id).status == "running"

    cancelled = bulk.cancel(ports, big.organization_id, big_id)
    assert cancelled.status == "cancelling" and cancelled.counts.cancelled > 0
    final = wait_finished(engine, big, big_id, timeout=30)
    c = final.counts
    assert final.status == "cancelled" and c.pending == 0 and c.succeeded + c.cancelled == 1000
    assert sum(sends_by_recipient(fake, big.number).values()) == c.succeeded + 1  # and the interactive one


def test_pause_then_resume_completes_the_job(
    engine: Engine, fake: RunningFakeGraph, bulk_worker: Process, ports: bulk.BulkPorts
) -> None:
    tenant = bulk_tenant(engine, mps=50)
    tenant.templates([TEMPLATE])
    to = [recipient() for _ in range(300)]
    job_id = plan(ports, tenant, to)
    assert wait_for(lambda: summary(engine, tenant, job_id).counts.succeeded > 0, 30, 0.1)
    assert bulk.pause(ports, tenant.organization_id, job_id).status == "paused"
    # Chunks already submitted settle; nothing new starts.
    assert wait_for(lambda: bulk.list_items(engine, tenant.organization_id, job_id, after_seq=None, limit=1,
                                            status="submitted").rows == [], 30, 0.2)  # fmt: skip
    held = sum(sends_by_recipient(fake, tenant.number).values())
    assert 0 < held < 300
    assert summary(engine, tenant, job_id).counts.pending == 300 - held
    assert bulk.resume(ports, tenant.organization_id, job_id).status == "running"
    final = wait_finished(engine, tenant, job_id)
    assert final.status == "completed" and final.counts.succeeded == 300
    assert set(sends_by_recipient(fake, tenant.number).values()) == {1}


def test_resuming_failed_resends_only_the_failed(
    engine: Engine, fake: RunningFakeGraph, bulk_worker: Process, ports: bulk.BulkPorts
) -> None:
    tenant = bulk_tenant(engine, mps=100)
    tenant.templates([TEMPLATE])
    fake.add_fault(kind="error", code=131049, phone_number_id=tenant.number, count=7)
    to = [recipient() for _ in range(50)]
    job_id = plan(ports, tenant, to)
    first = wait_finished(engine, tenant, job_id)
    assert (first.status, first.counts.succeeded, first.counts.failed) == ("completed_with_errors", 43, 7)
    failed = bulk.list_items(
        engine, tenant.organization_id, job_id, after_seq=None, limit=100, status="failed"
    )
    assert {i.error_code for i in failed.rows} == {"131049"}
    retried = {i.recipient for i in failed.rows}
    assert not retried & set(sends_by_recipient(fake, tenant.number))

    bulk.resume(ports, tenant.organization_id, job_id, "failed")
    final = wait_finished(engine, tenant, job_id)
    assert (final.status, final.counts.succeeded, final.counts.failed) == ("completed", 50, 0)
    sent = sends_by_recipient(fake, tenant.number)
    assert set(sent) == set(to) and set(sent.values()) == {1}


def test_kill_9_of_the_bulk_worker_mid_run_loses_and_repeats_nothing(
    engine: Engine, fake: RunningFakeGraph, env: dict[str, str], outbound: Process, ports: bulk.BulkPorts
) -> None:
    tenant = bulk_tenant(engine, mps=40)
    tenant.templates([TEMPLATE])
    # The scheduler syncs templates from the Graph API at start: the account must list it there too,
    # or the sync marks it deleted and the chunks that run after it skip their items.
    fake.seed_templates(tenant.waba_id, [TEMPLATE])
    to = [recipient() for _ in range(400)]
    worker = start_worker(["bulk"], processes=1, threads=4, env=env, timeout=60)
    scheduler: Process | None = None
    try:
        scheduler = start_scheduler(env)
        job_id = plan(ports, tenant, to)
        assert wait_for(lambda: summary(engine, tenant, job_id).counts.succeeded >= 40, 60, 0.05)
        worker.kill()
        worker = start_worker(["bulk"], processes=1, threads=4, env=env, timeout=60)
        final = wait_finished(engine, tenant, job_id, timeout=150)
    finally:
        worker.stop()
        if scheduler is not None:
            scheduler.stop()
    assert final.status == "completed" and final.counts.succeeded == 400
    sent = sends_by_recipient(fake, tenant.number)
    assert set(sent) == set(to) and set(sent.values()) == {1}
    assert len(set(wamids(engine, tenant, job_id).values())) == 400
