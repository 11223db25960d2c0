"""The API's guard at the door: authentication before the body, a per-address limit on failed
authentication, the documented fail-open when Redis is down, and an audit event per accepted send."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from config import Settings
from db import tables as t
from db.uow import UnitOfWork
from devkit.processes import Process, free_port, start_ingress
from devkit.tenants import Tenant
from ingress.api import ApiOptions
from tests.support.api import bearer, build_app

pytestmark = pytest.mark.integration


def _text(to: str) -> dict[str, object]:
    return {"to": to, "type": "text", "text": {"body": "hello"}}


@pytest.fixture(scope="module")
def ingress(settings: Settings) -> Iterator[str]:
    process: Process
    process, url = start_ingress()
    yield url
    process.stop()


def _answer_without_sending_the_body(url: str, headers: str) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            (
                "POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: 100000\r\n{headers}\r\n"
            ).encode()
        )
        answer = b""
        # A server waiting for the body would time out here.
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def _length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_unauthenticated_requests_are_refused_before_the_body_is_read(ingress: str) -> None:
    answer = _answer_without_sending_the_body(ingress, "")
    assert answer.startswith(b"HTTP/1.1 401") and b"auth_missing" in answer
    answer = _answer_without_sending_the_body(ingress, "Authorization: Bearer ads_nobody\r\n")
    assert answer.startswith(b"HTTP/1.1 401") and b"auth_invalid" in answer


def test_failed_authentication_is_rate_limited_per_client_address(settings: Settings, tenant: Tenant) -> None:
    options = ApiOptions(unauthenticated_limit=3, redis_namespace=f"adsapp-test:{uuid.uuid4().hex}")
    app, _ = build_app(settings, options)
    key = tenant.api_key()
    with (
        TestClient(app, client=("203.0.113.7", 4000)) as attacker,
        TestClient(app, client=("198.51.100.9", 4000)) as neighbour,
    ):
        for _ in range(3):
            assert attacker.get("/api/v1/messages", headers=bearer("ads_guess")).status_code == 401
        refused = attacker.get("/api/v1/messages", headers=bearer("ads_guess"))
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["code"] == "rate_limited"
        assert attacker.get("/api/v1/messages").status_code == 429
        # A valid key is never counted against, or locked out by, its address...
        assert attacker.get("/api/v1/messages", headers=bearer(key)).status_code == 200
        # ...and other addresses are not affected.
        assert neighbour.get("/api/v1/messages", headers=bearer("ads_guess")).status_code == 401


def _counter(registry: CollectorRegistry, limit: str) -> float:
    value = registry.get_sample_value("api_rate_limiter_unavailable_total", {"limit": limit})
    return value or 0.0


def test_when_redis_is_down_the_rate_limits_are_lifted(settings: Settings, tenant: Tenant) -> None:
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    options = ApiOptions(rate_limit=1, unauthenticated_limit=1, redis_namespace=f"t:{uuid.uuid4().hex}")
    app, state = build_app(down, options)
    key = tenant.api_key()
    with TestClient(app) as client:
        for _ in range(3):  # over both limits, yet served: the limiter fails open
            answer = client.get("/api/v1/messages", headers=bearer(key))
            assert answer.status_code == 200 and "X-RateLimit-Limit" not in answer.headers
            assert client.get("/api/v1/messages").status_code == 401  # still refused, never 429
    assert _counter(state.registry, "key") == 3
    assert _counter(state.registry, "address") == 3


def test_an_accepted_send_is_recorded_in_the_event_store(
    client: TestClient, engine: Engine, tenant: Tenant
) -> None:
    key = tenant.api_key()
    answer = client.post("/api/v1/messages", json=_text(tenant.contact()), headers=bearer(key))
    assert answer.status_code == 202
    message_id = answer.json()["data"]["id"]
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        event_type, payload = uow.conn.execute(
            sa.select(t.event_store.c.event_type, t.event_store.c.payload).where(
                t.event_store.c.aggregate_id == message_id
            )
        ).one()
    assert event_type == "message.accepted"
    assert payload["api_key_id"] == tenant.keys[key] and payload["via"] == "api"
