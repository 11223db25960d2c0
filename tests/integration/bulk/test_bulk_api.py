"""/api/v1/bulk-jobs on the real Postgres and Redis: planning (skips with reasons, the template
checked once, plan, messaging limit, idempotency), items and their CSV export, pause, resume and
cancel, conversation updates and contact imports. Chunks run in-process through the same use
cases the bulk worker runs; the send path itself is exercised in test_bulk_fleet."""

from __future__ import annotations

import csv
import io
from typing import Any
from uuid import UUID

import orjson
import pytest
import sqlalchemy as sa
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from db.tables import bulk_job_chunks, bulk_jobs, contacts, conversations, messages, whatsapp_numbers
from db.uow import UnitOfWork
from devkit.jobs import RecordingPublisher
from devkit.tenants import TEMPLATE, Tenant, recipient
from domain import jobs as names
from domain.bulk import settle_chunk_job
from domain.ports import Job
from services import bulk_run
from tests.support.bulk import (
    BULK_SCOPES,
    bulk_tenant,
    run_bulk_jobs,
    set_messaging_limit,
    template_components,
)
from workers.inbound.realtime import RedisRealtime

pytestmark = pytest.mark.integration

COMPONENTS = template_components(body=("{{contact.name}}", "A1"), button="A1")


def headers(tenant: Tenant, **extra: str) -> dict[str, str]:
    key = next(iter(tenant.keys), None) or tenant.api_key(BULK_SCOPES)
    return {"Authorization": f"Bearer {key}", **extra}


def broadcast(to: list[Any], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "broadcast",
        "template": {"name": "order_update", "language": {"code": "en_US"}, "components": COMPONENTS},
        "recipients": [r if isinstance(r, dict) else {"wa_id": r} for r in to],
    }
    body.update(overrides)
    return body


def items(client: TestClient, tenant: Tenant, job_id: str, **params: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/bulk-jobs/{job_id}/items", params={"limit": "1000", **params},
                          headers=headers(tenant))  # fmt: skip
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def job(client: TestClient, tenant: Tenant, job_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/bulk-jobs/{job_id}", headers=headers(tenant))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def settle_messages(tenant: Tenant, failed: dict[str, int] | None = None) -> None:
    """What the send path records, for this test's queued messages: a wamid, or Meta's code."""
    failed = failed or {}
    with UnitOfWork(tenant.engine, organization_id=tenant.organization_id) as uow:
        rows = uow.conn.execute(
            sa.select(messages.c.id, messages.c.raw["to"].astext).where(messages.c.status == "queued")
        ).all()
        for message_id, to in rows:
            if to in failed:
                values = {"status": "failed", "error_code": failed[to], "error_title": "limit"}
            else:
                values = {"status": "sent", "wamid": f"wamid.{message_id}"}
            uow.conn.execute(sa.update(messages).where(messages.c.id == message_id).values(**values))
        uow.commit()


def test_broadcast_skips_bad_recipients_with_reasons_and_sends_the_rest(
    client: TestClient, engine: Engine, jobs: RecordingPublisher
) -> None:
    tenant = bulk_tenant(engine)
    tenant.templates([TEMPLATE])
    named = tenant.contact()
    tenant.execute(sa.update(contacts).where(contacts.c.wa_id == named).values(profile_name="Ann"))
    opted_out = tenant.contact(opted_out=True)
    fresh, other = recipient(), recipient()
    bad_vars = {"wa_id": recipient(), "components": [{"type": "body", "parameters": []}]}
    body = broadcast([named, fresh, opted_out, fresh, "12ab", bad_vars, "+" + other])
    response = client.post("/api/v1/bulk-jobs", json=body, headers=headers(tenant))
    assert response.status_code == 202, response.text
    created = response.json()["data"]
    assert (created["kind"], created["status"], created["total"]) == ("broadcast", "pending", 7)
    assert created["links"]["self"] == f"/api/v1/bulk-jobs/{created['id']}"

    run_bulk_jobs(engine, jobs)
    sends = [j for j in jobs.jobs if j.actor == names.SEND_MESSAGE_ACTOR]
    assert sorted(j.kwargs["to"] for j in sends) == sorted([named, fresh, other])
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        raw = uow.conn.execute(
            sa.select(messages.c.raw).where(messages.c.raw["to"].astext == named)
        ).scalar_one()
    assert raw["template"]["components"][1]["parameters"][0]["text"] == "Ann"  # frozen per recipient

    settle_messages(tenant, failed={other: 131049})
    jobs.jobs.clear()
    jobs.publish(settle_job(tenant, created["id"], 0))
    run_bulk_jobs(engine, jobs)
    final = job(client, tenant, created["id"])
    assert final["status"] == "completed_with_errors"
    assert final["counts"] | {"delivered": 0, "read": 0} == {
        "total": 7, "succeeded": 2, "failed": 1, "skipped": 4, "cancelled": 0, "pending": 0,
        "delivered": 0, "read": 0,
    }  # fmt: skip
    by_seq = {i["seq"]: i for i in items(client, tenant, created["id"])}
    assert [by_seq[s]["status"] for s in range(7)] == [
        "succeeded", "succeeded", "skipped", "skipped", "skipped", "skipped", "failed",
    ]  # fmt: skip
    assert by_seq[2]["error"]["code"] == "contact_opted_out"
    assert by_seq[3]["error"]["code"] == "duplicate_recipient"
    assert by_seq[4]["error"]["code"] == "invalid_wa_id"
    assert by_seq[5]["error"]["code"] == "template_parameters_mismatch"
    assert by_seq[6]["error"]["code"] == "131049" and by_seq[6]["recipient"] == other
    assert by_seq[0]["wamid"].startswith("wamid.")
    failed_only = items(client, tenant, created["id"], status="failed")
    assert [i["seq"] for i in failed_only] == [6]
    assert [i["seq"] for i in items(client, tenant, created["id"], error_code="invalid_wa_id")] == [4]

    export = client.get(f"/api/v1/bulk-jobs/{created['id']}/items", params={"format": "csv"},
                        headers=headers(tenant))  # fmt: skip
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert len(rows) == 7 and rows[6]["error_code"] == "131049" and rows[0]["wamid"].startswith("wamid.")

    # Resuming `failed` re-plans the 131049 item only (a per-user limit is not permanent).
    jobs.jobs.clear()
    resumed = client.post(f"/api/v1/bulk-jobs/{created['id']}/resume", json={"scope": "failed"},
                          headers=headers(tenant))  # fmt: skip
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["data"]["status"] == "running"
    run_bulk_jobs(engine, jobs)
    assert [j.kwargs["to"] for j in jobs.jobs if j.actor == names.SEND_MESSAGE_ACTOR] == [other]


def settle_job(tenant: Tenant, job_id: str, chunk: int) -> Job:
    return settle_chunk_job(str(tenant.organization_id), job_id, chunk)


def _job_count(engine: Engine, tenant: Tenant) -> int:
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        return int(uow.conn.execute(sa.select(sa.func.count()).select_from(bulk_jobs)).scalar_one())


def test_template_checked_once_plan_and_messaging_limit_refuse_with_nothing_written(
    client: TestClient, engine: Engine, jobs: RecordingPublisher
) -> None:
    tenant = bulk_tenant(engine)
    missing = client.post("/api/v1/bulk-jobs", json=broadcast([recipient()]), headers=headers(tenant))
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "template_not_found"

    tenant.templates([TEMPLATE])
    set_messaging_limit(tenant, 250)
    over = client.post("/api/v1/bulk-jobs", json=broadcast([recipient() for _ in range(260)]),
                       headers=headers(tenant))  # fmt: skip
    assert over.status_code == 422
    error = over.json()["error"]
    assert error["code"] == "messaging_limit_exceeded"
    assert error["details"] | {"phone_number_id": None} == {
        "phone_number_id": None, "limit": 250, "used": 0, "requested": 260, "over": 10,
    }  # fmt: skip

    free = bulk_tenant(engine, plan="free")
    free.templates([TEMPLATE])
    refused = client.post("/api/v1/bulk-jobs", json=broadcast([recipient()]), headers=headers(free))
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "bulk_not_allowed"

    reader = tenant.api_key(("bulk:read",))
    scoped = client.post("/api/v1/bulk-jobs", json=broadcast([recipient()]),
                         headers={"Authorization": f"Bearer {reader}"})  # fmt: skip
    assert scoped.status_code == 403
    assert _job_count(engine, tenant) == 0 and _job_count(engine, free) == 0
    assert jobs.jobs == []


def test_idempotency_key_replays_the_job_and_refuses_another_body(
    client: TestClient, engine: Engine, jobs: RecordingPublisher
) -> None:
    tenant = bulk_tenant(engine)
    tenant.templates([TEMPLATE])
    body = broadcast([recipient(), recipient()])
    first = client.post("/api/v1/bulk-jobs", json=body, headers=headers(tenant, **{"Idempotency-Key": "k-1"}))
    again = client.post("/api/v1/bulk-jobs", json=body, headers=headers(tenant, **{"Idempotency-Key": "k-1"}))
    assert first.status_code == again.status_code == 202
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post("/api/v1/bulk-jobs", json=broadcast([recipient()]),
                        headers=headers(tenant, **{"Idempotency-Key": "k-1"}))  # fmt: skip
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    assert _job_count(engine, tenant) == 1


def test_pause_holds_chunks_resume_releases_them_cancel_cancels_the_rest(
    client: TestClient, engine: Engine, jobs: RecordingPublisher
) -> None:
    tenant = bulk_tenant(engine, mps=10)  # chunks of 10
    tenant.templates([TEMPLATE])
    created = client.post("/api/v1/bulk-jobs", json=broadcast([recipient() for _ in range(60)]),
                          headers=headers(tenant)).json()["data"]  # fmt: skip
    job_id = created["id"]
    paused = client.post(f"/api/v1/bulk-jobs/{job_id}/pause", headers=headers(tenant))
    assert paused.status_code == 200 and paused.json()["data"]["status"] == "paused"
    outcomes = run_bulk_jobs(engine, jobs)
    assert [o.action for o in outcomes] == ["held"] * 3
    assert [j for j in jobs.jobs if j.actor == names.SEND_MESSAGE_ACTOR] == []

    resumed = client.post(f"/api/v1/bulk-jobs/{job_id}/resume", json={}, headers=headers(tenant))
    assert resumed.json()["data"]["status"] == "pending"
    run_bulk_jobs(engine, jobs)  # three chunks submit; their settles wait for the messages
    assert len([j for j in jobs.jobs if j.actor == names.SEND_MESSAGE_ACTOR]) == 30

    cancelled = client.post(f"/api/v1/bulk-jobs/{job_id}/cancel", headers=headers(tenant))
    assert cancelled.status_code == 200
    view = cancelled.json()["data"]
    assert view["status"] == "cancelling" and view["counts"]["cancelled"] == 30
    settle_messages(tenant)
    jobs.jobs.clear()
    for chunk in range(3):
        jobs.publish(settle_job(tenant, job_id, chunk))
    run_bulk_jobs(engine, jobs)
    final = job(client, tenant, job_id)
    assert final["status"] == "cancelled"
    assert (final["counts"]["succeeded"], final["counts"]["cancelled"], final["counts"]["pending"]) == (
        30,
        30,
        0,
    )
    again = client.post(f"/api/v1/bulk-jobs/{job_id}/cancel", headers=headers(tenant))
    assert again.status_code == 409 and again.json()["error"]["code"] == "bulk_job_finished"


def test_list_pages_by_cursor_and_filters(
    client: TestClient, engine: Engine, jobs: RecordingPublisher
) -> None:
    tenant = bulk_tenant(engine)
    tenant.templates([TEMPLATE])
    ids = [
        client.post("/api/v1/bulk-jobs", json=broadcast([recipient()]), headers=headers(tenant)).json()[
            "data"
        ]["id"]
        for _ in range(3)
    ]
    first = client.get("/api/v1/bulk-jobs", params={"limit": "2"}, headers=headers(tenant)).json()
    assert [j["id"] for j in first["data"]] == ids[::-1][:2]
    rest = client.get("/api/v1/bulk-jobs", params={"limit": "2", "cursor": first["meta"]["next_cursor"]},
                      headers=headers(tenant)).json()  # fmt: skip
    assert [j["id"] for j in rest["data"]] == [ids[0]] and rest["meta"]["next_cursor"] is None
    none = client.get("/api/v1/bulk-jobs", params={"kind": "contacts.import"}, headers=headers(tenant)).json()
    assert none["data"] == []
    other = bulk_tenant(engine)
    assert client.get(f"/api/v1/bulk-jobs/{ids[0]}", headers=headers(other)).status_code == 404


def _conversation(tenant: Tenant, status: str = "open", tags: list[str] | None = None) -> UUID:
    wa_id = tenant.contact()
    with UnitOfWork(tenant.engine, organization_id=tenant.organization_id) as uow:
        contact_id = uow.conn.execute(sa.select(contacts.c.id).where(contacts.c.wa_id == wa_id)).scalar_one()
        conversation_id = uow.conn.execute(
            sa.insert(conversations)
            .values(
                organization_id=tenant.organization_id, contact_id=contact_id, status=status, tags=tags or []
            )
            .returning(conversations.c.id)
        ).scalar_one()
        uow.commit()
    return UUID(str(conversation_id))


def _conversation_rows(tenant: Tenant) -> dict[UUID, tuple[str, list[str]]]:
    with UnitOfWork(tenant.engine, organization_id=tenant.organization_id) as uow:
        rows = uow.conn.execute(
            sa.select(conversations.c.id, conversations.c.status, conversations.c.tags)
        ).all()
    return {r.id: (r.status, list(r.tags)) for r in rows}


def test_conversations_update_touches_exactly_the_filtered_rows_of_the_tenant(
    client: TestClient, engine: Engine, jobs: RecordingPublisher
) -> None:
    tenant, other = bulk_tenant(engine), bulk_tenant(engine)
    hit = [_conversation(tenant, tags=["vip"]) for _ in range(3)]
    untagged = _conversation(tenant)
    resolved_vip = _conversation(tenant, status="resolved", tags=["vip"])
    foreign = _conversation(other, tags=["vip"])
    body = {
        "kind": "conversations.update",
        "filters": {"status": "open", "tag": "vip"},
        "updates": {"status": "pending", "add_tags": ["campaign"], "remove_tags": ["vip"]},
    }
    response = client.post("/api/v1/bulk-jobs", json=body, headers=headers(tenant))
    assert response.status_code == 202, response.text
    assert response.json()["data"]["total"] == 3
    run_bulk_jobs(engine, jobs)
    assert job(client, tenant, response.json()["data"]["id"])["status"] == "completed"
    rows = _conversation_rows(tenant)
    assert all(rows[c] == ("pending", ["campaign"]) for c in hit)
    assert rows[untagged] == ("open", []) and rows[resolved_vip] == ("resolved", ["vip"])
    assert _conversation_rows(other)[foreign] == ("open", ["vip"])

    unknown = {**body, "updates": {"assigned_to": "00000000-0000-0000-0000-000000000001"}}
    refused = client.post("/api/v1/bulk-jobs", json=unknown, headers=headers(tenant))
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "assignee_unknown"


def test_csv_import_writes_the_good_rows_and_reports_the_bad_by_row_number(
    client: TestClient, engine: Engine, jobs: RecordingPublisher
) -> None:
    tenant = bulk_tenant(engine)
    good_a, good_b = recipient(), recipient()
    existing = tenant.contact()
    text = (
        "wa_id,name,tags,opt_in\n"
        f"{good_a},Ann,vip;new,true\n"
        "12x,Bad,,\n"
        f"+{good_b},Bob,,false\n"
        f"{good_a},Again,,\n"
        f"{existing},,returning,\n"
        f"{recipient()},Eve,bad tag!,\n"
    )
    response = client.post("/api/v1/bulk-jobs", content=text.encode(),
                           headers=headers(tenant, **{"Content-Type": "text/csv"}))  # fmt: skip
    assert response.status_code == 202, response.text
    job_id = response.json()["data"]["id"]
    run_bulk_jobs(engine, jobs)
    final = job(client, tenant, job_id)
    assert final["status"] == "completed_with_errors"
    assert (final["counts"]["succeeded"], final["counts"]["skipped"]) == (3, 3)
    bad = {i["seq"]: i["error"]["code"] for i in items(client, tenant, job_id, status="skipped")}
    assert bad == {2: "invalid_wa_id", 4: "duplicate_row", 6: "invalid_tags"}
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        rows = {
            r.wa_id: (r.profile_name, list(r.tags), r.opted_out)
            for r in uow.conn.execute(
                sa.select(contacts.c.wa_id, contacts.c.profile_name, contacts.c.tags, contacts.c.opted_out)
            )
        }
    assert rows[good_a] == ("Ann", ["new", "vip"], False)
    assert rows[good_b] == ("Bob", [], True)
    assert rows[existing] == (None, ["returning"], False)
    assert len(rows) == 3

    boundary = "xyzzy"
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="c.csv"\r\n'
        f"Content-Type: text/csv\r\n\r\nwa_id,name\r\n{recipient()},Zed\r\n--{boundary}--\r\n"
    ).encode()
    upload = client.post("/api/v1/bulk-jobs", content=multipart,
                         headers=headers(tenant, **{"Content-Type": f"multipart/form-data; boundary={boundary}"}))  # fmt: skip
    assert upload.status_code == 202, upload.text
    assert upload.json()["data"]["total"] == 1


def test_imports_over_the_limits_are_413(
    client: TestClient, engine: Engine, jobs: RecordingPublisher
) -> None:
    tenant = bulk_tenant(engine)
    rows = "wa_id\n" + "\n".join(str(15550000000 + i) for i in range(100_001))
    response = client.post("/api/v1/bulk-jobs", content=rows.encode(),
                           headers=headers(tenant, **{"Content-Type": "text/csv"}))  # fmt: skip
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_many_rows"
    huge = b"wa_id,name\n" + b"15550000000," + b"x" * (21 * 1024 * 1024) + b"\n"
    response = client.post(
        "/api/v1/bulk-jobs", content=huge, headers=headers(tenant, **{"Content-Type": "text/csv"})
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert _job_count(engine, tenant) == 0


def test_progress_goes_to_the_tenant_channel_and_the_pending_gauge_counts_down(
    client: TestClient, engine: Engine, jobs: RecordingPublisher, redis_client: Redis
) -> None:
    tenant = bulk_tenant(engine)
    tenant.templates([TEMPLATE])
    pubsub = redis_client.pubsub()
    pubsub.subscribe(f"org:{tenant.organization_id}")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    created = client.post("/api/v1/bulk-jobs", json=broadcast([recipient(), recipient()]),
                          headers=headers(tenant)).json()["data"]  # fmt: skip
    before = bulk_run.items_pending(engine)
    assert before >= 2
    realtime = RedisRealtime(redis_client)
    run_bulk_jobs(engine, jobs, realtime=realtime)
    settle_messages(tenant)
    jobs.jobs.clear()
    jobs.publish(settle_job(tenant, created["id"], 0))
    outcomes = run_bulk_jobs(engine, jobs, realtime=realtime)
    assert outcomes[-1].finished == "completed"
    event = pubsub.get_message(timeout=5)
    while event is not None and event["type"] != "message":
        event = pubsub.get_message(timeout=5)
    assert event is not None
    payload = orjson.loads(event["data"])
    assert payload == {"type": "bulk_job.finished", "bulk_job_id": created["id"],
                       "chunk_counts": {"succeeded": 2}, "status": "completed"}  # fmt: skip
    assert bulk_run.items_pending(engine) == before - 2
    pubsub.close()


def test_a_broadcast_whose_number_is_gone_fails_with_the_reason(
    client: TestClient, engine: Engine, jobs: RecordingPublisher
) -> None:
    tenant = bulk_tenant(engine, mps=10)
    tenant.templates([TEMPLATE])
    created = client.post("/api/v1/bulk-jobs", json=broadcast([recipient() for _ in range(25)]),
                          headers=headers(tenant)).json()["data"]  # fmt: skip
    tenant.execute(sa.delete(whatsapp_numbers).where(whatsapp_numbers.c.phone_number_id == tenant.number))
    run_bulk_jobs(engine, jobs)
    final = job(client, tenant, created["id"])
    assert final["status"] == "failed"
    assert final["error"]["code"] == "phone_number_unknown"
    assert (final["counts"]["cancelled"], final["counts"]["pending"]) == (25, 0)
    assert [j for j in jobs.jobs if j.actor == names.SEND_MESSAGE_ACTOR] == []


def test_the_stale_chunk_sweep_re_enqueues_chunks_whose_jobs_were_lost(
    client: TestClient, engine: Engine, jobs: RecordingPublisher
) -> None:
    tenant = bulk_tenant(engine, mps=10)
    tenant.templates([TEMPLATE])
    created = client.post("/api/v1/bulk-jobs", json=broadcast([recipient() for _ in range(25)]),
                          headers=headers(tenant)).json()["data"]  # fmt: skip
    lost = [j for j in jobs.jobs if j.actor == names.RUN_BULK_CHUNK_ACTOR]
    assert [j.kwargs["chunk"] for j in lost] == [0, 1, 2]
    jobs.jobs.clear()  # the worker died holding them, and the broker lost them too
    ports = bulk_run.RunPorts(engine, jobs)
    org = str(tenant.organization_id)

    def swept() -> list[int]:
        # The sweep is system-wide: chunks other tests left behind may be stale by now as well.
        before = len(jobs.jobs)
        bulk_run.sweep_stale_chunks(ports, older_than_seconds=60)
        mine = [j for j in jobs.jobs[before:] if j.kwargs.get("job_id") == created["id"]]
        jobs.jobs[before:] = [j for j in jobs.jobs[before:] if j.kwargs.get("organization_id") == org]
        return sorted(j.kwargs["chunk"] for j in mine)

    assert swept() == []  # not stale yet
    tenant.execute(
        sa.update(bulk_job_chunks)
        .where(bulk_job_chunks.c.bulk_job_id == UUID(created["id"]))
        .values(updated_at=sa.func.now() - sa.text("interval '2 minutes'"))
    )
    assert swept() == [0, 1, 2]
    run_bulk_jobs(engine, jobs)
    assert len([j for j in jobs.jobs if j.actor == names.SEND_MESSAGE_ACTOR]) == 25
    assert swept() == []  # just touched
