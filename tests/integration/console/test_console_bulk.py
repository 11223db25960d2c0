"""Bulk-job control in the console over HTTP: pause, resume, cancel (recorded with who did it),
tenant isolation, an operator's view of a named organization, and refusals."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from db.tables import bulk_jobs, event_store
from db.uow import UnitOfWork
from devkit.tenants import TEMPLATE, Tenant, make_tenant, recipient
from tests.integration.console.test_console_bulk_browser import COMPONENTS
from tests.support.bulk import BULK_SCOPES, bulk_tenant
from tests.support.console import operator_key, sign_in


def plan(client: TestClient, tenant: Tenant, n: int = 3) -> tuple[str, str]:
    tenant.templates([TEMPLATE])
    key = tenant.api_key(BULK_SCOPES)
    body = {
        "kind": "broadcast",
        "template": {"name": "order_update", "language": {"code": "en_US"}, "components": COMPONENTS},
        "recipients": [{"wa_id": recipient()} for _ in range(n)],
    }
    answer = client.post("/api/v1/bulk-jobs", json=body, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["data"]["id"]), key


def status(engine: Engine, job_id: str) -> str:
    with UnitOfWork(engine, system=True) as uow:
        return str(
            uow.conn.execute(sa.select(bulk_jobs.c.status).where(bulk_jobs.c.id == job_id)).scalar_one()
        )


def test_pause_resume_and_cancel_are_carried_out_and_recorded(client: TestClient, engine: Engine) -> None:
    tenant = bulk_tenant(engine)
    job_id, key = plan(client, tenant)
    csrf = sign_in(client, key)
    page = client.get(f"/console/bulk-jobs/{job_id}").text
    assert 'data-testid="bulk-percent">0 %' in page and ">Pause<" in page

    answer = client.post(f"/console/bulk-jobs/{job_id}/pause", data={"csrf_token": csrf})
    assert answer.status_code == 303 and status(engine, job_id) == "paused"
    assert "Bulk job pause: now paused." in client.get(answer.headers["location"]).text
    assert client.post(f"/console/bulk-jobs/{job_id}/pause", data={"csrf_token": csrf}).status_code == 409
    client.post(f"/console/bulk-jobs/{job_id}/resume", data={"csrf_token": csrf})
    assert status(engine, job_id) in ("pending", "running")
    client.post(f"/console/bulk-jobs/{job_id}/cancel", data={"csrf_token": csrf})
    assert status(engine, job_id) in ("cancelling", "cancelled")
    assert client.post(f"/console/bulk-jobs/{job_id}/pause").status_code == 403  # no CSRF token

    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        actions = uow.conn.execute(
            sa.select(event_store.c.event_type).where(event_store.c.aggregate_id == job_id)
            .where(event_store.c.payload["actor"]["via"].astext == "console").order_by(event_store.c.id)
        ).scalars().all()  # fmt: skip
    assert actions == ["bulk_job.pause", "bulk_job.resume", "bulk_job.cancel"]


def test_a_tenant_never_sees_another_tenants_jobs(client: TestClient, engine: Engine) -> None:
    owner = bulk_tenant(engine)
    job_id, _ = plan(client, owner)
    stranger = make_tenant(engine)
    csrf = sign_in(client, stranger.api_key())
    assert job_id[:8] not in client.get("/console/bulk-jobs").text
    # Naming the owner's organization changes nothing for a tenant key.
    assert job_id[:8] not in client.get(f"/console/bulk-jobs?org={owner.organization_id}").text
    assert client.get(f"/console/bulk-jobs/{job_id}?org={owner.organization_id}").status_code == 404
    assert client.get(f"/console/bulk-jobs/{job_id}/items.csv").status_code == 404
    # The live fragment the job page refreshes from keeps to the same scope.
    assert client.get(f"/console/fragments/bulk-jobs/{job_id}?org={owner.organization_id}").status_code == 404
    assert job_id[:8] not in client.get("/console/fragments/overview").text
    answer = client.post(
        f"/console/bulk-jobs/{job_id}/cancel?org={owner.organization_id}", data={"csrf_token": csrf}
    )
    assert answer.status_code == 404 and status(engine, job_id) == "pending"
    assert job_id[:8] not in client.get("/console/").text


def test_an_operator_opens_a_named_organizations_job(client: TestClient, engine: Engine) -> None:
    owner = bulk_tenant(engine)
    job_id, _ = plan(client, owner)
    sign_in(client, operator_key(make_tenant(engine)))
    assert job_id[:8] in client.get(f"/console/bulk-jobs?org={owner.organization_id}").text
    overview = client.get("/console/").text
    link = re.search(rf'href="(/console/bulk-jobs/{job_id}\?org=[0-9a-f-]+)"', overview)
    assert link, "the overview lists every tenant's running jobs for an operator"
    assert client.get(link.group(1)).status_code == 200
    export = client.get(f"/console/bulk-jobs/{job_id}/items.csv?org={owner.organization_id}")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert (
        export.text.splitlines()[0]
        == "seq,recipient,status,message_id,wamid,error_code,error_title,settled_at"
    )
    assert len(export.text.splitlines()) == 4


def test_bad_bulk_input_is_refused(client: TestClient, engine: Engine) -> None:
    sign_in(client, make_tenant(engine).api_key())
    assert client.get("/console/bulk-jobs?status=zombie").status_code == 400
    assert client.get("/console/bulk-jobs/not-a-uuid").status_code == 404
    assert (
        client.get("/console/bulk-jobs/00000000-0000-0000-0000-000000000000?status=nope").status_code == 400
    )
