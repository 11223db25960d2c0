"""Bulk-job changes made over `/api/v1` are in the audit trail, naming the key that made them."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from devkit.jobs import RecordingPublisher
from devkit.tenants import TEMPLATE, recipient
from tests.integration.bulk.test_bulk_api import broadcast
from tests.support import audit
from tests.support.bulk import BULK_SCOPES, bulk_tenant

pytestmark = pytest.mark.integration


def test_creating_pausing_resuming_and_cancelling_a_bulk_job_are_audited(
    client: TestClient, engine: Engine, jobs: RecordingPublisher
) -> None:
    tenant = bulk_tenant(engine)
    tenant.templates([TEMPLATE])
    auth = {"Authorization": f"Bearer {tenant.api_key(BULK_SCOPES)}", "Idempotency-Key": "audit-1"}
    body = broadcast([recipient() for _ in range(3)])
    created = client.post("/api/v1/bulk-jobs", json=body, headers=auth)
    assert created.status_code == 202, created.text
    job_id = created.json()["data"]["id"]
    replay = client.post("/api/v1/bulk-jobs", json=body, headers=auth)
    assert replay.headers.get("Idempotent-Replayed") == "true"  # the same job: not a second creation
    for action, payload in (("pause", None), ("resume", {}), ("cancel", None)):
        answer = client.post(f"/api/v1/bulk-jobs/{job_id}/{action}", json=payload, headers=auth)
        assert answer.status_code == 200, answer.text
    refused = client.post(f"/api/v1/bulk-jobs/{job_id}/pause", headers=auth)
    assert refused.status_code == 409

    recorded = audit.actions(engine, tenant.organization_id, "bulk_job")
    assert [(kind, aggregate) for kind, aggregate, _ in recorded] == [
        ("bulk_job.create", job_id), ("bulk_job.pause", job_id), ("bulk_job.resume", job_id),
        ("bulk_job.cancel", job_id),
    ]  # fmt: skip
    assert recorded[0][2]["kind"] == "broadcast" and recorded[0][2]["total"] == 3
    assert recorded[1][2]["status"] == "paused" and recorded[2][2]["scope"] == "pending"
    actor = recorded[0][2]["actor"]
    assert actor["via"] == "api" and actor["key_name"] == "key-0" and not actor["operator"]
