"""The app's behaviour around its collaborators, with the broker and dependencies replaced."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import generate_latest

from config.logging import JsonFormatter, configure_logging, request_id_var
from config.settings import Settings
from ingress.app import create_app
from ingress.publisher import PublishFailed
from tests.support.counts import RecordedCounts

BODY = b'{"object":"whatsapp_business_account","entry":[]}'
SECRET = "unit-secret"

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakePublisher:
    def __init__(self) -> None:
        self.failure: str | None = None
        self.published: list[tuple[str, bytes]] = []
        self.gate: asyncio.Event | None = None
        self.closed = False

    async def start(self) -> None:
        return None

    async def close(self, drain_timeout: float) -> None:
        self.closed = True

    def is_ready(self) -> bool:
        return self.failure is None

    async def publish(self, queue_name: str, body: bytes, message_id: str) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise PublishFailed(self.failure)
        self.published.append((queue_name, body))


def exposition(client: httpx.AsyncClient) -> str:
    """The app's metrics as its internal metrics port would serve them (the public app has none)."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    return generate_latest(transport.app.state.metrics.registry).decode()  # type: ignore[attr-defined]


async def down() -> None:
    raise ConnectionError("refused")


async def up() -> None:
    return None


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def counts() -> RecordedCounts:
    return RecordedCounts()


@pytest.fixture
async def client(publisher: FakePublisher, counts: RecordedCounts) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(whatsapp_app_secret=SECRET)  # type: ignore[call-arg]
    app = create_app(
        settings,
        publisher=publisher,
        counters=counts,
        probes={"rabbitmq": up, "postgres": down, "redis": up},
        configure_logs=False,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as c:
            yield c
    assert publisher.closed


def signed() -> dict[str, str]:
    signature = "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    return {"content-type": "application/json; charset=utf-8", "x-hub-signature-256": signature}


@pytest.mark.parametrize("reason", ["unavailable", "timeout", "nacked", "unroutable"])
async def test_publish_failure_is_503_and_counted(
    client: httpx.AsyncClient, publisher: FakePublisher, reason: str
) -> None:
    publisher.failure = reason
    response = await client.post("/webhooks/whatsapp", content=BODY, headers=signed())
    assert response.status_code == 503
    metrics = exposition(client)
    assert f'adsapp_ingress_publish_failures_total{{queue="inbound",reason="{reason}"}} 1.0' in metrics


async def test_answers_and_confirmed_publishes_are_counted_for_the_fleet(
    client: httpx.AsyncClient, publisher: FakePublisher, counts: RecordedCounts
) -> None:
    assert (await client.post("/webhooks/whatsapp", content=BODY, headers=signed())).status_code == 200
    publisher.failure = "unavailable"
    assert (await client.post("/webhooks/whatsapp", content=BODY, headers=signed())).status_code == 503
    unsigned = {"content-type": "application/json"}
    assert (await client.post("/webhooks/whatsapp", content=BODY, headers=unsigned)).status_code == 401
    assert counts.added == [
        ("queues", "in:inbound", 1),  # only the publish the broker confirmed
        ("webhooks", "whatsapp:2xx", 1),
        ("webhooks", "whatsapp:5xx", 1),
        ("webhooks", "whatsapp:4xx", 1),
    ]


async def test_queued_message_carries_request_id(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    response = await client.post(
        "/webhooks/whatsapp", content=BODY, headers={**signed(), "x-request-id": "abc"}
    )
    assert response.status_code == 200
    [(queue, raw)] = publisher.published
    assert queue == "inbound"
    assert json.loads(raw)["kwargs"]["request_id"] == "abc"


async def test_unsafe_request_id_is_replaced(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    response = await client.post(
        "/webhooks/whatsapp", content=BODY, headers={**signed(), "x-request-id": "a b\tc" + "x" * 200}
    )
    assert response.status_code == 200
    assert len(response.headers["x-request-id"]) == 36


async def test_readyz_names_the_failing_dependency(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 503
    payload = response.json()
    assert payload["failing"] == ["postgres"]
    assert payload["checks"]["rabbitmq"] == "ok"
    assert payload["checks"]["postgres"] == "down"  # the exception's text stays in the log


async def test_wrong_methods_and_paths(client: httpx.AsyncClient) -> None:
    assert (await client.put("/webhooks/whatsapp", content=b"{}")).status_code == 405
    assert (await client.get("/webhooks/stripe")).status_code == 405
    assert (await client.get("/nope")).status_code == 404
    assert 'route="unmatched",status="404"' in exposition(client)


async def test_declared_oversize_is_refused_before_reading(client: httpx.AsyncClient) -> None:
    headers = {**signed(), "content-length": str(10 * 1024 * 1024)}
    response = await client.post("/webhooks/whatsapp", content=BODY, headers=headers)
    assert response.status_code == 413


def test_json_log_lines_carry_request_id_and_extra_fields() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    token = request_id_var.set("rid-1")
    try:
        logging.getLogger("ingress.test").warning("refused %s", "x", extra={"reason": "mismatch"})
    finally:
        request_id_var.reset(token)
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["msg"] == "refused x"
    assert line["level"] == "warning"
    assert line["request_id"] == "rid-1"
    assert line["reason"] == "mismatch"
    assert JsonFormatter().format(logging.makeLogRecord({"msg": "plain"})).startswith("{")
