"""A bulk job's items and chunks reference it by (job, organization): even the system scope, which
row-level security lets write any tenant's rows, cannot put one tenant's item or chunk under
another tenant's job; and deleting an organization still removes its jobs' items and chunks
(through the job, now that they have no key of their own to organizations)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.tables import bulk_job_chunks, bulk_job_items, bulk_jobs, organizations
from db.uow import UnitOfWork
from devkit.jobs import RecordingPublisher
from devkit.tenants import TEMPLATE, Tenant, recipient
from services import bulk
from tests.support.bulk import bulk_tenant, template_components

pytestmark = pytest.mark.integration


COMPONENTS = template_components()


def _plan(tenant: Tenant) -> UUID:
    tenant.templates([TEMPLATE])
    recipients = [bulk.Recipient(wa_id=recipient()) for _ in range(3)]
    plan = bulk.BroadcastPlan("order_update", "en_US", COMPONENTS, recipients=recipients)
    ports = bulk.BulkPorts(tenant.engine, RecordingPublisher())
    return bulk.plan_broadcast(ports, tenant.organization_id, plan, None).id


def _insert_as_system(engine: Engine, statement: Any) -> None:
    with UnitOfWork(engine, system=True) as uow:
        uow.conn.execute(statement)
        uow.commit()


def test_an_item_or_chunk_of_one_tenant_under_another_tenants_job_is_refused(engine: Engine) -> None:
    a, b = bulk_tenant(engine), bulk_tenant(engine)
    job = _plan(a)
    item = {"bulk_job_id": job, "seq": 1_000, "chunk": 0, "recipient": "15550000000"}
    for org in (b.organization_id, a.organization_id):
        statement = sa.insert(bulk_job_items).values(organization_id=org, **item)
        if org == b.organization_id:
            with pytest.raises(sa.exc.IntegrityError, match="fk_bulk_job_items_bulk_job_id_bulk_jobs"):
                _insert_as_system(engine, statement)
        else:
            _insert_as_system(engine, statement)  # the same row under its own tenant is fine
    with pytest.raises(sa.exc.IntegrityError, match="fk_bulk_job_chunks_bulk_job_id_bulk_jobs"):
        _insert_as_system(
            engine,
            sa.insert(bulk_job_chunks).values(organization_id=b.organization_id, bulk_job_id=job, chunk=99),
        )


def test_deleting_an_organization_removes_its_jobs_items_and_chunks(engine: Engine) -> None:
    tenant = bulk_tenant(engine)
    job = _plan(tenant)

    def left() -> list[int]:
        with UnitOfWork(engine, system=True) as uow:
            return [
                int(uow.conn.execute(sa.select(sa.func.count()).where(column == job)).scalar_one())
                for column in (bulk_jobs.c.id, bulk_job_items.c.bulk_job_id, bulk_job_chunks.c.bulk_job_id)
            ]

    assert left() == [1, 3, 1]
    _insert_as_system(engine, sa.delete(organizations).where(organizations.c.id == tenant.organization_id))
    assert left() == [0, 0, 0]
