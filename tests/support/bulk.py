"""Bulk job helpers: tenants on a plan with bulk sending, and running a job's chunks in-process
(the same use cases the bulk worker's actors call) from the jobs a unit of work published."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.tables import organizations, whatsapp_numbers
from db.uow import UnitOfWork
from devkit.jobs import RecordingPublisher
from devkit.tenants import Tenant, make_tenant
from domain import jobs
from services import bulk_run

BULK_SCOPES = ("messages:write", "messages:read", "bulk:write", "bulk:read")


def template_components(header: str = "A1", body: tuple[str, str] = ("{{contact.wa_id}}", "B"),
                        button: str = "x") -> list[dict[str, Any]]:  # fmt: skip
    """Components for `devkit.tenants.TEMPLATE` (a header, two body and one URL button parameter)."""
    return [
        {"type": "header", "parameters": [{"type": "text", "text": header}]},
        {"type": "body", "parameters": [{"type": "text", "text": text} for text in body]},
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": button}]},
    ]


def bulk_tenant(engine: Engine, *, plan: str = "enterprise", mps: int = 80, numbers: int = 1) -> Tenant:
    tenant = make_tenant(engine, mps=mps, numbers=numbers)
    with UnitOfWork(engine, system=True) as uow:
        uow.conn.execute(
            sa.update(organizations).where(organizations.c.id == tenant.organization_id).values(plan=plan)
        )
        uow.commit()
    return tenant


def set_messaging_limit(tenant: Tenant, limit: int | None) -> None:
    tenant.execute(
        sa.update(whatsapp_numbers)
        .where(whatsapp_numbers.c.phone_number_id == tenant.number)
        .values(messaging_limit=limit)
    )


def run_bulk_jobs(
    engine: Engine,
    publisher: RecordingPublisher,
    max_rounds: int = 1000,
    realtime: bulk_run.ProgressChannel | None = None,
) -> list[Any]:
    """Run every bulk chunk job published so far (and those they publish) in this process, until
    only settles waiting for their messages' outcomes are left; those and the send jobs stay in
    `publisher.jobs`. Returns the outcomes."""
    outcomes = []
    ports = bulk_run.RunPorts(engine, publisher, realtime)
    for _ in range(max_rounds):
        pending = [j for j in publisher.jobs if j.queue == jobs.BULK_QUEUE]
        if not pending:
            return outcomes
        publisher.jobs = [j for j in publisher.jobs if j.queue != jobs.BULK_QUEUE]
        round_ = []
        for job in pending:
            kw = job.kwargs
            args = (ports, UUID(kw["organization_id"]), UUID(kw["job_id"]), int(kw["chunk"]))
            if job.actor == jobs.RUN_BULK_CHUNK_ACTOR:
                round_.append(bulk_run.run_chunk(*args))
            else:
                round_.append(bulk_run.settle_chunk(*args))
        outcomes += round_
        if all(o.action == "waiting" for o in round_):
            return outcomes
    raise AssertionError("bulk jobs kept publishing more jobs")
