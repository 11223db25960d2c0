"""The outbound sweeps, template sync (CLI and scheduler) and template status webhooks."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from db.repos.templates import named
from db.tables import event_store, messages, outbox
from db.uow import UnitOfWork
from devkit.jobs import RecordingPublisher
from devkit.tenants import TEMPLATE, Tenant
from tests.support.fake_graph import RunningFakeGraph
from tests.support.outbound import command_of, queue
from workers.graph import GraphClient
from workers.outbound import sweeps
from workers.templates import TemplateSyncIncomplete, apply_template_status_update, sync_all

pytestmark = pytest.mark.integration


def resources(tenant: Tenant, publisher: RecordingPublisher, lease: float = 60.0) -> Any:
    return SimpleNamespace(
        engine=tenant.engine,
        jobs=publisher,
        graph=SimpleNamespace(options=SimpleNamespace(send_lease_seconds=lease)),
    )


def rows(tenant: Tenant, statement: Any) -> list[Any]:
    with UnitOfWork(tenant.engine, organization_id=tenant.organization_id) as uow:
        return list(uow.conn.execute(statement).all())


def age(tenant: Tenant, message_id: object, **values: Any) -> None:
    tenant.execute(
        sa.update(messages)
        .where(messages.c.id == message_id)
        .values(updated_at=datetime.now(UTC) - timedelta(hours=1), **values)
    )


def test_sends_stuck_in_sending_become_ambiguous(tenant: Tenant, publisher: RecordingPublisher) -> None:
    stuck, fresh = queue(tenant), queue(tenant)
    age(tenant, stuck.message_id, status="sending", attempts=1)
    tenant.execute(
        sa.update(messages).where(messages.c.id == fresh.message_id).values(status="sending", attempts=1)
    )
    assert sweeps.expire_stuck_sending(resources(tenant, publisher)) >= 1
    assert tenant.message(stuck.message_id)["status"] == "ambiguous"
    assert tenant.message(fresh.message_id)["status"] == "sending"
    # The outcome is on the audit trail like any other send outcome, under the message's tenant.
    events = rows(
        tenant,
        sa.select(event_store.c.organization_id, event_store.c.aggregate_id, event_store.c.payload).where(
            event_store.c.aggregate_id.in_([str(stuck.message_id), str(fresh.message_id)]),
            event_store.c.event_type == "message.ambiguous",
        ),
    )
    assert [(e.organization_id, e.aggregate_id, e.payload["attempt"]) for e in events] == [
        (tenant.organization_id, str(stuck.message_id), 1)
    ]


def test_queued_sends_whose_job_is_lost_are_enqueued_again(
    tenant: Tenant, publisher: RecordingPublisher
) -> None:
    lost, waiting = queue(tenant), queue(tenant)
    age(tenant, lost.message_id)
    age(tenant, waiting.message_id)
    with UnitOfWork(
        tenant.engine, organization_id=tenant.organization_id, publisher=RecordingPublisher()
    ) as uow:
        uow.enqueue(waiting.job())  # still in the outbox: the outbox sweep owns it
        uow.conn.execute(
            sa.update(messages)
            .where(messages.c.id == waiting.message_id)
            .values(updated_at=datetime.now(UTC) - timedelta(hours=1))
        )
        uow.conn.commit()
    sweeps.requeue_orphaned(resources(tenant, publisher))
    requeued = [command_of(job) for job in publisher.jobs]
    assert lost in requeued and waiting not in requeued
    publisher.jobs.clear()
    sweeps.requeue_orphaned(resources(tenant, publisher))  # touched: not again until a full period passes
    assert lost not in [command_of(job) for job in publisher.jobs]
    with UnitOfWork(tenant.engine, system=True) as uow:
        uow.conn.execute(
            sa.delete(outbox).where(outbox.c.kwargs["message_id"].astext == str(waiting.message_id))
        )
        uow.commit()


def test_templates_sync_command_fetches_every_page(fake: RunningFakeGraph, tenant: Tenant) -> None:
    many = [{**TEMPLATE, "name": f"t_{i:03d}", "status": "APPROVED"} for i in range(130)]
    fake.seed_templates(tenant.waba_id, many)
    out = subprocess.run(
        [sys.executable, "-m", "workers.cli.main", "templates", "sync", str(tenant.organization_id)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "GRAPH_API_URL": fake.url},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "130 templates synced"
    with UnitOfWork(tenant.engine, organization_id=tenant.organization_id) as uow:
        (stored,) = named(uow.conn, "t_129")
    assert stored.status == "APPROVED" and stored.language == "en_US"
    assert stored.components == TEMPLATE["components"]


def test_scheduled_sync_marks_vanished_templates_deleted(fake: RunningFakeGraph, tenant: Tenant) -> None:
    fake.seed_templates(tenant.waba_id, [TEMPLATE, {**TEMPLATE, "name": "promo"}])
    with GraphClient(fake.url, "v21.0") as graph:
        assert sync_all(tenant.engine, graph) >= 2
        fake.seed_templates(tenant.waba_id, [TEMPLATE])
        sync_all(tenant.engine, graph)
    with UnitOfWork(tenant.engine, organization_id=tenant.organization_id) as uow:
        assert [t.status for t in named(uow.conn, "promo")] == ["DELETED"]
        assert [t.status for t in named(uow.conn, "order_update")] == ["APPROVED"]


def test_scheduled_sync_that_cannot_reach_the_graph_api_raises_so_it_is_retried_soon(
    fake: RunningFakeGraph, tenant: Tenant
) -> None:
    fake.seed_templates(tenant.waba_id, [TEMPLATE])
    fake.add_fault(kind="outage", endpoint="templates")
    with GraphClient(fake.url, "v21.0", retry_attempts=1) as graph:
        with pytest.raises(TemplateSyncIncomplete) as caught:
            sync_all(tenant.engine, graph)
        assert caught.value.failed >= 1
        with UnitOfWork(tenant.engine, organization_id=tenant.organization_id) as uow:
            assert named(uow.conn, "order_update") == []
        fake.clear_faults()
        assert sync_all(tenant.engine, graph) >= 1
    with UnitOfWork(tenant.engine, organization_id=tenant.organization_id) as uow:
        assert [t.status for t in named(uow.conn, "order_update")] == ["APPROVED"]


def test_a_stopping_scheduler_syncs_no_further_organization(fake: RunningFakeGraph, tenant: Tenant) -> None:
    fake.seed_templates(tenant.waba_id, [TEMPLATE])
    with GraphClient(fake.url, "v21.0") as graph:
        assert sync_all(tenant.engine, graph, stopping=lambda: True) == 0
    with UnitOfWork(tenant.engine, organization_id=tenant.organization_id) as uow:
        assert named(uow.conn, "order_update") == []


def test_template_status_webhooks_update_the_template(fake: RunningFakeGraph, tenant: Tenant) -> None:
    fake.seed_templates(tenant.waba_id, [TEMPLATE])
    with GraphClient(fake.url, "v21.0") as graph:
        sync_all(tenant.engine, graph)
    with UnitOfWork(tenant.engine, organization_id=tenant.organization_id) as uow:
        assert len(named(uow.conn, "order_update")) == 1
        template_id = uow.conn.execute(
            sa.text("SELECT template_id FROM message_templates WHERE name = 'order_update'")
        ).scalar()
        paused = {"event": "PAUSED", "message_template_id": template_id, "message_template_name": "order_update",
                  "message_template_language": "en_US", "reason": "LOW_QUALITY"}  # fmt: skip
        assert apply_template_status_update(uow.conn, tenant.organization_id, paused) == 1
        assert [t.status for t in named(uow.conn, "order_update")] == ["PAUSED"]
        flagged = {**paused, "event": "FLAGGED"}
        assert apply_template_status_update(uow.conn, tenant.organization_id, flagged) == 0
        by_name = {
            "event": "REINSTATED",
            "message_template_name": "order_update",
            "message_template_language": "en_US",
        }
        assert apply_template_status_update(uow.conn, tenant.organization_id, by_name) == 1
        assert [t.status for t in named(uow.conn, "order_update")] == ["APPROVED"]
        uow.commit()
