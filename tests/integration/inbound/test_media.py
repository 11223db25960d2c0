"""Media fetch: Graph API metadata, download with the tenant's token, sha256 check, storage; failures
are recorded on the media row and never touch the message. The Graph API is an httpx.MockTransport or
the fake Graph API behind an in-process worker."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest
import sqlalchemy as sa
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from sqlalchemy.engine import Engine

from config import Settings
from db.uow import UnitOfWork
from devkit import whatsapp as wa
from devkit.tenants import Tenant
from domain import jobs
from domain.errors import TransientError
from services.number_routes import RouteCache
from services.publisher import BrokerJobPublisher
from tests.support.fake_graph import running_fake_graph
from tests.support.rows import rows
from workers import resources
from workers.broker import build_broker
from workers.graph.client import GraphClient
from workers.inbound.media import fetch_job
from workers.inbound.media_fetch import (
    CHECKSUM_HOLD_SECONDS,
    MAX_CHECKSUM_MISMATCHES,
    ChecksumMismatchPersists,
    fetch_media,
)
from workers.storage.local import LocalMediaStorage

pytestmark = pytest.mark.integration

CONTENT = b"\x89PNG fake image bytes" * 50


def graph(*, corrupt: bool = False, missing: bool = False, seen: list[str] | None = None) -> GraphClient:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request.headers["authorization"])
        if missing:
            return httpx.Response(
                404,
                json={
                    "error": {
                        "message": "Unsupported get request",
                        "type": "GraphMethodException",
                        "code": 100,
                        "error_subcode": 33,
                    }
                },
            )
        if request.url.path.startswith("/download/"):
            return httpx.Response(200, content=CONTENT[:-1] if corrupt else CONTENT)
        media_id = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(
            200,
            json={
                "url": f"http://graph.test/download/{media_id}",
                "mime_type": "image/png",
                "sha256": hashlib.sha256(CONTENT).hexdigest(),
                "file_size": len(CONTENT),
                "id": media_id,
            },
        )

    return GraphClient("http://graph.test", "v21.0", transport=httpx.MockTransport(handle), retry_attempts=1)


def _image(tenant: Tenant, deliver: Callable, media_id: str) -> None:
    deliver(
        wa.delivery(wa.change(tenant.phone_number_id, messages=[wa.media("16505551234", "image", media_id)]))
    )


def _fetch(engine: Engine, tenant: Tenant, client: GraphClient, storage: LocalMediaStorage, media_id: str):
    route = RouteCache(engine).number(tenant.phone_number_id)
    return fetch_media(
        engine=engine,
        graph=client,
        storage=storage,
        route=route,
        organization_id=tenant.organization_id,
        media_id=media_id,
    )


def test_fetch_verifies_and_stores_once(
    engine: Engine, tenant: Tenant, deliver: Callable, tmp_path: Path
) -> None:
    _image(tenant, deliver, "med-ok")
    storage = LocalMediaStorage(tmp_path)
    seen: list[str] = []
    result = _fetch(engine, tenant, graph(seen=seen), storage, "med-ok")
    assert result.status == "stored"
    assert storage.get(result.storage_key) == CONTENT
    assert seen == ["Bearer tenant-token"] * 2
    [row] = rows(engine, tenant.organization_id, "SELECT * FROM media WHERE media_id = 'med-ok'")
    assert (row["status"], row["file_size"], row["mime_type"]) == ("stored", len(CONTENT), "image/png")
    assert row["sha256"] == hashlib.sha256(CONTENT).hexdigest()
    again = _fetch(engine, tenant, graph(seen=seen), storage, "med-ok")
    assert again.status == "already_stored" and len(seen) == 2


def test_checksum_mismatch_is_retried_and_noted(
    engine: Engine, tenant: Tenant, deliver: Callable, tmp_path: Path
) -> None:
    _image(tenant, deliver, "med-bad")
    with pytest.raises(TransientError):
        _fetch(engine, tenant, graph(corrupt=True), LocalMediaStorage(tmp_path), "med-bad")
    [row] = rows(engine, tenant.organization_id, "SELECT * FROM media WHERE media_id = 'med-bad'")
    assert row["status"] == "pending" and "sha256" in row["last_error"] and row["attempts"] == 1
    assert _fetch(engine, tenant, graph(), LocalMediaStorage(tmp_path), "med-bad").status == "stored"


def test_permanent_failure_is_recorded_and_the_message_stays(
    engine: Engine, tenant: Tenant, deliver: Callable, tmp_path: Path
) -> None:
    _image(tenant, deliver, "med-gone")
    result = _fetch(engine, tenant, graph(missing=True), LocalMediaStorage(tmp_path), "med-gone")
    assert result.status == "failed"
    [row] = rows(engine, tenant.organization_id, "SELECT * FROM media WHERE media_id = 'med-gone'")
    assert row["status"] == "failed" and "100" in row["last_error"]
    assert len(rows(engine, tenant.organization_id, "SELECT id FROM messages WHERE type = 'image'")) >= 1


def test_storage_refuses_keys_outside_its_root(tmp_path: Path) -> None:
    storage = LocalMediaStorage(tmp_path)
    for key in ("../escape", "/abs", "a/../../b", ""):
        with pytest.raises(ValueError):
            storage.put(key, b"x", None)


def test_base64_media_checksum_is_accepted_and_a_mismatch_dead_letters(
    settings: Settings, engine: Engine, tenant: Tenant, deliver: Callable, tmp_path: Path
) -> None:
    # Meta's webhook names the digest in base64, this media endpoint in hex: the same digest.
    deliver(
        wa.delivery(
            wa.change(
                tenant.phone_number_id,
                messages=[wa.media("16505551234", "image", "med-b64", content=CONTENT)],
            )
        )
    )
    [claim] = rows(engine, tenant.organization_id, "SELECT sha256 FROM media WHERE media_id = 'med-b64'")
    assert claim["sha256"] == base64.b64encode(hashlib.sha256(CONTENT).digest()).decode()
    assert _fetch(engine, tenant, graph(), LocalMediaStorage(tmp_path), "med-b64").status == "stored"

    # A webhook whose checksum no download will ever match: three attempts, then a dead letter.
    media_id = f"med-wrong-{uuid.uuid4().hex[:6]}"
    deliver(
        wa.delivery(
            wa.change(
                tenant.phone_number_id,
                messages=[wa.media("16505551234", "image", media_id, content=b"other bytes")],
            )
        )
    )
    with running_fake_graph() as fake, _media_worker(settings, fake.url, tmp_path) as broker:
        BrokerJobPublisher(broker).publish(
            fetch_job(tenant.organization_id, tenant.phone_number_id, media_id)
        )
        dead = _wait_for(lambda: _dead_letters(engine, media_id))
        downloads = fake.state.requests["download"][media_id]
    [row] = rows(engine, tenant.organization_id, "SELECT * FROM media WHERE media_id = :m", m=media_id)
    assert row["status"] == "failed" and row["attempts"] == MAX_CHECKSUM_MISMATCHES
    assert "sha256 of the download is" in row["last_error"]
    hold = (row["retry_after"] - row["updated_at"]).total_seconds()
    assert abs(hold - CHECKSUM_HOLD_SECONDS) < 5
    [letter] = dead
    assert letter["actor"] == jobs.FETCH_MEDIA_ACTOR and "ChecksumMismatchPersists" in letter["error"]
    assert letter["attempts"] == MAX_CHECKSUM_MISMATCHES
    assert downloads == MAX_CHECKSUM_MISMATCHES  # one download per attempt, none after

    # Redriven within the hour: refused at once, nothing downloaded, the row unchanged.
    seen: list[str] = []
    with pytest.raises(ChecksumMismatchPersists):
        _fetch(engine, tenant, graph(seen=seen), LocalMediaStorage(tmp_path), media_id)
    assert seen == []


@contextmanager
def _media_worker(settings: Settings, graph_url: str, media_dir: Path) -> Iterator[RabbitmqBroker]:
    """The `media` queue consumed by an in-process Dramatiq worker over the real broker."""
    broker = build_broker(settings)
    previous = dramatiq.get_broker() if dramatiq.broker.global_broker is not None else None
    dramatiq.set_broker(broker)
    from workers.actors import media as media_actors

    broker.declare_actor(media_actors.fetch_media)
    local = settings.model_copy(update={"graph_api_url": graph_url, "media_dir": str(media_dir)})
    resources.install(resources.build(broker, local))
    worker = dramatiq.Worker(broker, worker_threads=1, queues={jobs.MEDIA_QUEUE})
    worker.start()
    try:
        yield broker
    finally:
        worker.stop()
        resources.install(None)
        broker.close()
        if previous is not None:
            dramatiq.set_broker(previous)


def _dead_letters(engine: Engine, media_id: str) -> list[Any]:
    with UnitOfWork(engine, system=True) as uow:
        return list(
            uow.conn.execute(
                sa.text("SELECT * FROM dead_letters WHERE kwargs->>'media_id' = :m"), {"m": media_id}
            ).mappings()
        )


def _wait_for(found: Callable[[], list[Any]], timeout: float = 60.0) -> list[Any]:
    """Retries wait out Dramatiq's backoff (seconds); poll for the dead letter's commit."""
    deadline = time.monotonic() + timeout
    while not (result := found()):
        assert time.monotonic() < deadline, "no dead letter"
        time.sleep(0.1)
    return result
