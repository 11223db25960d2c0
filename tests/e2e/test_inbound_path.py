"""The whole inbound path over real processes: signed POSTs to the uvicorn ingress, RabbitMQ, a
`dramatiq workers.app` subprocess, Postgres, Redis pub/sub and the fake Graph API for media."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from config import Settings
from db.uow import UnitOfWork
from devkit import whatsapp as wa
from devkit.processes import Process, start_ingress, start_worker, wait_for
from devkit.tenants import Tenant, make_tenant
from tests.support.fake_graph import RunningFakeGraph, running_fake_graph

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SECRET = "e2e-app-secret"
CUSTOMER = "16505551234"


@pytest.fixture(scope="module")
def fake_graph() -> Iterator[RunningFakeGraph]:
    with running_fake_graph() as fake:
        yield fake


@pytest.fixture(scope="module")
def worker_env(fake_graph: RunningFakeGraph, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"GRAPH_API_URL": fake_graph.url, "MEDIA_DIR": str(tmp_path_factory.mktemp("media"))}


@pytest.fixture(scope="module")
def ingress(settings: Settings) -> Iterator[str]:
    process, url = start_ingress({"WHATSAPP_APP_SECRET": SECRET})
    yield url
    # uvicorn re-raises the SIGTERM after its graceful shutdown.
    assert process.stop() in (0, -15), process.log()[-3000:]


@pytest.fixture(scope="module")
def worker(settings: Settings, worker_env: dict[str, str]) -> Iterator[Process]:
    process = start_worker(["inbound", "media"], processes=1, threads=8, env=worker_env)
    yield process
    process.stop()


def post(client: httpx.Client, document: dict[str, Any]) -> None:
    body = wa.encode(document)
    response = client.post(
        "/webhooks/whatsapp",
        content=body,
        headers={"content-type": "application/json", "x-hub-signature-256": wa.sign(body, SECRET)},
    )
    assert response.status_code == 200, response.text


def count(engine: Engine, sql: str, **params: Any) -> int:
    with UnitOfWork(engine, system=True) as uow:
        return int(uow.conn.execute(sa.text(sql), params).scalar_one())


def test_a_mixed_delivery_lands_for_both_tenants(
    engine: Engine, ingress: str, worker: Process, settings: Settings
) -> None:
    a, b = make_tenant(engine), make_tenant(engine)
    outbound = wa.wamid()
    pubsub = redis.Redis.from_url(settings.redis_url).pubsub()
    pubsub.subscribe(f"org:{a.organization_id}")
    batch = [wa.text(CUSTOMER, t) for t in wa.TRICKY_TEXTS[:4]] + [
        wa.media(CUSTOMER, "image", f"e2e-img-{a.phone_number_id}", caption="pic"),
        wa.reaction(CUSTOMER, outbound, "\U0001f44d"),
    ]
    document = wa.delivery_entries(
        (a.waba_id, [wa.change(a.phone_number_id, messages=batch, statuses=[wa.status(outbound, "read")])]),
        (b.waba_id, [wa.change(b.phone_number_id, messages=[wa.order(CUSTOMER)])]),
        ("waba-nobody", [wa.change("pn-nobody", messages=[wa.text(CUSTOMER, "lost")])]),
    )
    with httpx.Client(base_url=ingress, timeout=10) as client:
        post(client, document)
        post(client, document)  # Meta retried: nothing may double
    org_a, org_b = str(a.organization_id), str(b.organization_id)
    assert wait_for(
        lambda: (
            count(
                engine, "SELECT count(*) FROM media WHERE organization_id = :o AND status = 'stored'", o=org_a
            )
            == 1
            and count(engine, "SELECT count(*) FROM messages WHERE organization_id = :o", o=org_b) == 1
        ),
        30,
    ), worker.log()[-3000:]
    # The second copy has been processed too once the queue is empty; give it a moment to be sure.
    assert wait_for(
        lambda: (
            count(engine, "SELECT count(*) FROM messages WHERE organization_id = :o", o=org_a) == len(batch)
        ),
        10,
    )
    texts = {
        r[0]
        for r in _rows(
            engine, "SELECT text FROM messages WHERE organization_id = :o AND type = 'text'", o=org_a
        )
    }
    assert texts == set(wa.TRICKY_TEXTS[:4])
    assert (
        count(
            engine, "SELECT count(*) FROM message_status_events WHERE wamid = :w AND NOT applied", w=outbound
        )
        == 1
    )
    assert count(engine, "SELECT unread_count FROM conversations WHERE organization_id = :o", o=org_a) == 5
    # The outbound message recorded later picks up both the parked status and the reaction.
    from workers.inbound.statuses import apply_pending_statuses

    with UnitOfWork(engine, organization_id=a.organization_id) as uow:
        uow.conn.exec_driver_sql(
            "INSERT INTO messages (organization_id, wamid, direction, type, status) "
            "VALUES (%(o)s, %(w)s, 'outbound', 'text', 'sending')",
            {"o": org_a, "w": outbound},
        )
        apply_pending_statuses(uow.conn, outbound)
        uow.commit()
    assert _rows(engine, "SELECT status, reaction_emoji FROM messages WHERE wamid = :w", w=outbound) == [
        ("read", "\U0001f44d")
    ]
    path = (
        Path(worker.env["MEDIA_DIR"])
        / _rows(engine, "SELECT storage_key FROM media WHERE organization_id = :o", o=org_a)[0][0]
    )
    assert path.stat().st_size > 0
    received = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(received) < len(batch):
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "message":
            received.append(orjson.loads(message["data"]))
    assert sum(1 for e in received if e["event"] == "message.received") == len(batch)
    pubsub.close()


def _rows(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with UnitOfWork(engine, system=True) as uow:
        return [tuple(r) for r in uow.conn.execute(sa.text(sql), params)]


def test_worker_killed_mid_batch_loses_nothing_and_doubles_nothing(
    engine: Engine, ingress: str, settings: Settings, worker: Process, worker_env: dict[str, str]
) -> None:
    tenant: Tenant = make_tenant(engine)
    org = str(tenant.organization_id)
    deliveries = 300
    customers = [f"1650555{n:04d}" for n in range(20)]
    documents = []
    for i in range(deliveries):
        sender = customers[i % len(customers)]
        messages = [wa.text(sender, f"message {i}.{k}") for k in range(5 if i % 2 else 1)]
        documents.append(wa.delivery(wa.change(tenant.phone_number_id, messages=messages)))
    expected = sum(len(d["entry"][0]["changes"][0]["value"]["messages"]) for d in documents)
    worker.stop()  # queued first, then a worker of this test's own that can be killed mid-way
    with httpx.Client(base_url=ingress, timeout=10) as client:
        for document in documents:
            post(client, document)
    victim = start_worker(["inbound"], processes=1, threads=8, env=worker_env)
    replacement: Process | None = None
    try:
        stored = lambda: count(engine, "SELECT count(*) FROM messages WHERE organization_id = :o", o=org)  # noqa: E731
        assert wait_for(lambda: stored() > expected // 10, 30), victim.log()[-3000:]
        victim.kill()
        at_kill = stored()
        assert at_kill < expected, "the batch finished before the kill; make it larger"
        replacement = start_worker(["inbound"], processes=1, threads=8, env=worker_env)
        assert wait_for(lambda: stored() == expected, 60), (stored(), expected, replacement.log()[-3000:])
        time.sleep(0.5)  # anything still redelivered must not add rows
        assert stored() == expected
        assert (
            count(
                engine,
                "SELECT count(*) FROM event_store WHERE organization_id = :o "
                "AND event_type = 'message.received'",
                o=org,
            )
            == expected
        )
        assert (
            count(engine, "SELECT sum(unread_count) FROM conversations WHERE organization_id = :o", o=org)
            == expected
        )
        assert count(engine, "SELECT count(*) FROM conversations WHERE organization_id = :o", o=org) == len(
            customers
        )
        assert count(engine, "SELECT count(*) FROM contacts WHERE organization_id = :o", o=org) == len(
            customers
        )
    finally:
        if replacement is not None:
            replacement.stop()
        victim.kill()
