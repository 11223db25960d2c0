"""`/api/v1/dead-letters` on the real Postgres and RabbitMQ: tenant isolation, operator keys,
filters and cursors, count = what a batch takes, retry one (once), redrive tasks, discard."""

from __future__ import annotations

import uuid

import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from config import Settings
from db.repos.organizations import add_api_key
from db.uow import UnitOfWork
from devkit.deadletters import letter_row, seed_letters
from devkit.processes import queue_depth
from devkit.tenants import Tenant, make_tenant
from domain.apikeys import generate_key
from services import deadletters as dl
from services import redrive
from services.publisher import BrokerJobPublisher
from tests.support import audit
from tests.support.api import bearer

pytestmark = pytest.mark.integration

SCOPES = ("dead-letters:read", "dead-letters:write")


def _operator_key(tenant: Tenant) -> str:
    key = generate_key()
    with UnitOfWork(tenant.engine, organization_id=tenant.organization_id) as uow:
        add_api_key(uow.conn, tenant.organization_id, "ops", key, SCOPES, operator=True)
        uow.commit()
    return key.plaintext


@pytest.fixture
def world(engine: Engine) -> tuple[str, Tenant, Tenant]:
    queue = f"api_dlq_{uuid.uuid4().hex[:8]}"
    a, b = make_tenant(engine), make_tenant(engine)
    seed_letters(engine, [letter_row(queue, a.organization_id, n) for n in range(5)])
    seed_letters(engine, [letter_row(queue, b.organization_id, n, error_class="Refused") for n in range(3)])
    return queue, a, b


def test_a_tenant_key_sees_and_retries_only_its_own_letters(
    client: TestClient, world: tuple[str, Tenant, Tenant]
) -> None:
    queue, a, b = world
    key = a.api_key(SCOPES)
    listed = client.get("/api/v1/dead-letters", params={"queue": queue}, headers=bearer(key)).json()
    assert listed["success"] and len(listed["data"]) == 5
    assert {x["organization_id"] for x in listed["data"]} == {str(a.organization_id)}
    other = {"queue": queue, "organization_id": str(b.organization_id)}
    assert client.get("/api/v1/dead-letters", params=other, headers=bearer(key)).json()["data"] == []
    assert client.get("/api/v1/dead-letters/count", params=other, headers=bearer(key)).json()["data"] == {
        "count": 0
    }
    b_letter = client.get(
        "/api/v1/dead-letters", params={"queue": queue}, headers=bearer(_operator_key(b))
    ).json()["data"]
    b_id = next(x["id"] for x in b_letter if x["organization_id"] == str(b.organization_id))
    assert client.get(f"/api/v1/dead-letters/{b_id}", headers=bearer(key)).status_code == 404
    assert client.post(f"/api/v1/dead-letters/{b_id}/retry", headers=bearer(key)).status_code == 404
    assert client.delete(f"/api/v1/dead-letters/{b_id}", headers=bearer(key)).status_code == 404
    discarded = client.post("/api/v1/dead-letters/discard", json=other, headers=bearer(key)).json()
    assert discarded["data"] == {"discarded": 0}
    task = client.post("/api/v1/dead-letters/retry", json=other, headers=bearer(key)).json()["data"]
    assert task["matched"] == 0
    read_only = a.api_key(("dead-letters:read",))
    assert client.post("/api/v1/dead-letters/retry", json={}, headers=bearer(read_only)).status_code == 403


def test_an_operator_key_spans_tenants_and_pages_by_cursor(
    client: TestClient, world: tuple[str, Tenant, Tenant]
) -> None:
    queue, a, _ = world
    key = _operator_key(a)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"queue": queue, "limit": "3", **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/dead-letters", params=params, headers=bearer(key)).json()
        seen += [x["id"] for x in page["data"]]
        cursor = page["meta"]["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 8
    count = client.get(
        "/api/v1/dead-letters/count", params={"queue": queue, "error_class": "Refused"}, headers=bearer(key)
    )
    assert count.json()["data"] == {"count": 3}
    assert (
        client.get("/api/v1/dead-letters", params={"cursor": "nope"}, headers=bearer(key)).status_code == 400
    )


def test_retry_one_enqueues_the_original_once_and_shows_the_whole_letter(
    client: TestClient, world: tuple[str, Tenant, Tenant], settings: Settings
) -> None:
    queue, a, _ = world
    key = a.api_key(SCOPES)
    letter = client.get("/api/v1/dead-letters", params={"queue": queue, "limit": 1}, headers=bearer(key))
    letter_id = letter.json()["data"][0]["id"]
    detail = client.get(f"/api/v1/dead-letters/{letter_id}", headers=bearer(key)).json()["data"]
    assert detail["traceback"].startswith("Traceback") and detail["args"][0].startswith("k-")
    assert detail["chain"] == [] and detail["status"] == "dead"
    first = client.post(f"/api/v1/dead-letters/{letter_id}/retry", headers=bearer(key))
    assert first.status_code == 202 and first.json()["data"]["status"] == "retried"
    again = client.post(f"/api/v1/dead-letters/{letter_id}/retry", headers=bearer(key))
    assert again.status_code == 409 and again.json()["error"]["code"] == "dead_letter_not_dead"
    assert queue_depth(settings.rabbitmq_url, queue) == 1
    gone = client.delete(f"/api/v1/dead-letters/{letter_id}", headers=bearer(key))
    assert gone.status_code == 409


def test_a_batch_retry_is_a_task_that_moves_what_the_count_said(
    client: TestClient, world: tuple[str, Tenant, Tenant], engine: Engine, settings: Settings
) -> None:
    queue, a, _ = world
    key = _operator_key(a)
    flt = {"queue": queue, "error_class": "Broken"}
    count = client.get("/api/v1/dead-letters/count", params=flt, headers=bearer(key)).json()["data"]["count"]
    headers = {**bearer(key), "Idempotency-Key": f"redrive-{queue}"}
    started = client.post("/api/v1/dead-letters/retry", json={**flt, "max_per_second": 1000}, headers=headers)
    assert started.status_code == 202
    task = started.json()["data"]
    assert task["matched"] == count == 5 and task["status"] == "pending"
    replay = client.post("/api/v1/dead-letters/retry", json={**flt, "max_per_second": 1000}, headers=headers)
    assert replay.json()["data"]["id"] == task["id"] and replay.headers["Idempotent-Replayed"] == "true"
    conflict = client.post("/api/v1/dead-letters/retry", json=flt, headers=headers)
    assert conflict.status_code == 422

    broker = RabbitmqBroker(url=settings.rabbitmq_url, confirm_delivery=True, middleware=[])
    try:
        while (
            ran := redrive.run_redrive(engine, BrokerJobPublisher(broker), redrive_id=uuid.UUID(task["id"]))
        ) and not ran.done:
            pass
    finally:
        broker.close()
    done = client.get(f"/api/v1/dead-letter-redrives/{task['id']}", headers=bearer(key)).json()["data"]
    assert (done["status"], done["moved"], done["failed"]) == ("finished", 5, 0)
    assert queue_depth(settings.rabbitmq_url, queue) == 5
    cancel = client.post(f"/api/v1/dead-letter-redrives/{task['id']}/cancel", headers=bearer(key))
    assert cancel.json()["data"]["status"] == "finished"  # finished tasks stay as they were
    left = client.get("/api/v1/dead-letters/count", params={"queue": queue}, headers=bearer(key)).json()
    assert left["data"] == {"count": 3}
    discarded = client.post("/api/v1/dead-letters/discard", json={"queue": queue}, headers=bearer(key)).json()
    assert discarded["data"] == {"discarded": 3}
    audit = client.get(
        "/api/v1/dead-letters/count", params={"queue": queue, "status": "discarded"}, headers=bearer(key)
    )
    assert audit.json()["data"] == {"count": 3}


def test_a_cancelled_redrive_is_not_run(
    client: TestClient, world: tuple[str, Tenant, Tenant], engine: Engine
) -> None:
    queue, a, _ = world
    key = a.api_key(SCOPES)
    task = client.post("/api/v1/dead-letters/retry", json={"queue": queue}, headers=bearer(key)).json()[
        "data"
    ]
    cancelled = client.post(f"/api/v1/dead-letter-redrives/{task['id']}/cancel", headers=bearer(key))
    assert cancelled.json()["data"]["status"] == "cancelled"
    fetched = client.get(f"/api/v1/dead-letter-redrives/{task['id']}", headers=bearer(key)).json()["data"]
    assert fetched["status"] == "cancelled" and fetched["moved"] == 0
    mine = dl.list_redrives(engine, dl.Scope.tenant(a.organization_id))
    assert task["id"] in {str(r.id) for r in mine}
    assert all(r.organization_id == a.organization_id for r in mine)


def test_api_actions_on_dead_letters_are_audited_under_the_letters_organization(
    client: TestClient, world: tuple[str, Tenant, Tenant], engine: Engine
) -> None:
    queue, a, b = world
    ops = _operator_key(a)
    b_ids = [
        x["id"]
        for x in client.get("/api/v1/dead-letters", params={"queue": queue, "organization_id": str(b.organization_id)},
                            headers=bearer(ops)).json()["data"]
    ]  # fmt: skip
    retried = client.post(f"/api/v1/dead-letters/{b_ids[0]}/retry", headers=bearer(ops)).json()["data"]
    assert client.delete(f"/api/v1/dead-letters/{b_ids[1]}", headers=bearer(ops)).status_code == 200
    tenant_key = a.api_key(SCOPES)
    task = client.post(
        "/api/v1/dead-letters/retry", json={"queue": queue}, headers=bearer(tenant_key)
    ).json()["data"]
    client.post(f"/api/v1/dead-letter-redrives/{task['id']}/cancel", headers=bearer(tenant_key))
    discarded = client.post("/api/v1/dead-letters/discard", json={"queue": queue}, headers=bearer(tenant_key))
    assert discarded.json()["data"]["discarded"] == 5
    # A refused action records nothing.
    assert client.post(f"/api/v1/dead-letters/{b_ids[0]}/retry", headers=bearer(ops)).status_code == 409

    on_b = audit.actions(engine, b.organization_id, "dead_letter")
    assert [(kind, aggregate) for kind, aggregate, _ in on_b] == [
        ("dead_letter.retry", b_ids[0]), ("dead_letter.discard", b_ids[1]),
    ]  # fmt: skip
    actor = on_b[0][2]["actor"]
    assert actor["via"] == "api" and actor["operator"] and actor["key_name"] == "ops"
    assert actor["organization_id"] == str(a.organization_id)
    assert on_b[0][2]["message_id"] == retried["message_id"]
    on_a = audit.actions(engine, a.organization_id, "dead_letter")
    assert [(kind, aggregate) for kind, aggregate, _ in on_a] == [
        ("dead_letter.redrive", task["id"]), ("dead_letter.redrive_cancel", task["id"]),
        ("dead_letter.discard_filtered", "filter"),
    ]  # fmt: skip
    assert on_a[0][2]["matched"] == 5 and on_a[2][2]["discarded"] == 5
    assert all(not p["actor"]["operator"] and p["actor"]["via"] == "api" for _, _, p in on_a)
