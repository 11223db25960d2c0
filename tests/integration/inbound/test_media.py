"""Media fetch: Graph API metadata, download with the tenant's token, sha256 check, storage; failures
are recorded on the media row and never touch the message. The Graph API is an httpx.MockTransport."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from domain.errors import TransientError
from tests.integration.inbound.conftest import Tenant, rows
from tests.support import whatsapp as wa
from workers.graph.client import GraphClient
from workers.inbound.media_fetch import fetch_media
from workers.inbound.routes import RouteCache
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
