"""The webhook routes over real HTTP against a real broker: what is accepted is queued once, byte for
byte; what is refused answers its status and queues nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
import stripe
from prometheus_client import generate_latest

from domain import jobs
from ingress.app import IngressApp, create_app
from tests.integration.ingress.support import (
    STRIPE_SECRET,
    VERIFY_TOKEN,
    WHATSAPP_OLD_SECRET,
    QueueReader,
    UvicornThread,
    wait_for,
    whatsapp_body,
    whatsapp_signature,
)
from tests.support.ingress import make_settings

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def ingress_app(vhost_url: str) -> IngressApp:
    return create_app(make_settings(vhost_url, max_body_bytes=64 * 1024), configure_logs=False)


@pytest.fixture(scope="module")
def base_url(ingress_app: IngressApp) -> Iterator[str]:
    with UvicornThread(ingress_app) as url:
        assert wait_for(ingress_app.state.publisher.is_ready, 10), "publisher never connected"
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as c:
        yield c


def post_whatsapp(client: httpx.Client, body: bytes, **headers: str) -> httpx.Response:
    sent = {**JSON, "x-hub-signature-256": whatsapp_signature(body), **headers}
    return client.post("/webhooks/whatsapp", content=body, headers=sent)


def stripe_event(event_id: str = "evt_1") -> bytes:
    return orjson.dumps(
        {"id": event_id, "object": "event", "type": "invoice.paid", "created": 1, "data": {"object": {}}}
    )


def stripe_header(body: bytes, secret: str = STRIPE_SECRET, timestamp: int | None = None) -> str:
    return str(stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=timestamp))


def test_whatsapp_delivery_is_queued_once_with_identical_bytes(
    client: httpx.Client, queues: QueueReader
) -> None:
    # Meta signs \u-escaped text; the queued body must be those exact bytes, not a re-serialization.
    body = whatsapp_body("caf\\u00e9 \\ud83d\\ude00", entries=2).replace(b"\\\\u", b"\\u")
    before = time.time()
    response = post_whatsapp(client, body, **{"x-request-id": "req-abc-123"})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "req-abc-123"

    [(properties, message)] = queues.take_all(jobs.INBOUND_QUEUE)
    assert properties.delivery_mode == 2
    assert message["queue_name"] == jobs.INBOUND_QUEUE
    assert message["actor_name"] == jobs.WHATSAPP_DELIVERY_ACTOR
    assert message["args"] == [body.decode()]
    assert message["args"][0].encode() == body
    assert message["kwargs"]["request_id"] == "req-abc-123"
    assert before <= message["kwargs"]["received_at"] <= time.time()
    assert message["options"] == {}
    assert len(message["message_id"]) == 36
    assert properties.message_id == message["message_id"]
    assert queues.depth(jobs.BILLING_QUEUE) == 0


def test_request_id_is_generated_when_absent(client: httpx.Client, queues: QueueReader) -> None:
    response = post_whatsapp(client, whatsapp_body())
    assert response.status_code == 200
    [(_, message)] = queues.take_all(jobs.INBOUND_QUEUE)
    assert message["kwargs"]["request_id"] == response.headers["x-request-id"]


def test_rotated_secret_is_still_accepted(client: httpx.Client, queues: QueueReader) -> None:
    body = whatsapp_body()
    response = post_whatsapp(
        client, body, **{"x-hub-signature-256": whatsapp_signature(body, WHATSAPP_OLD_SECRET)}
    )
    assert response.status_code == 200
    assert queues.depth(jobs.INBOUND_QUEUE) == 1


def test_stripe_event_is_queued_once_on_billing(client: httpx.Client, queues: QueueReader) -> None:
    body = stripe_event()
    response = client.post(
        "/webhooks/stripe", content=body, headers={**JSON, "stripe-signature": stripe_header(body)}
    )
    assert response.status_code == 200, response.text
    [(_, message)] = queues.take_all(jobs.BILLING_QUEUE)
    assert message["actor_name"] == jobs.STRIPE_EVENT_ACTOR
    assert message["args"][0].encode() == body
    assert queues.depth(jobs.INBOUND_QUEUE) == 0


def test_stripe_header_with_several_v1_values(client: httpx.Client, queues: QueueReader) -> None:
    body = stripe_event()
    header = stripe_header(body)
    t, v1 = header.split(",")
    response = client.post(
        "/webhooks/stripe", content=body, headers={**JSON, "stripe-signature": f"{t},v1={'0' * 64},{v1}"}
    )
    assert response.status_code == 200
    assert queues.depth(jobs.BILLING_QUEUE) == 1


WA = whatsapp_body()
RESERIALIZED = orjson.dumps(orjson.loads(WA), option=orjson.OPT_INDENT_2)


@pytest.mark.parametrize(
    ("name", "body", "headers", "status"),
    [
        ("missing signature", WA, JSON, 401),
        ("malformed signature", WA, {**JSON, "x-hub-signature-256": "md5=abc"}, 401),
        ("short signature", WA, {**JSON, "x-hub-signature-256": "sha256=abc"}, 401),
        ("wrong secret", WA, {**JSON, "x-hub-signature-256": whatsapp_signature(WA, "nope")}, 401),
        # Signed over a re-serialization of the same JSON: not the bytes received.
        ("re-serialized", WA, {**JSON, "x-hub-signature-256": whatsapp_signature(RESERIALIZED)}, 401),
        ("not json", b"hello", None, 400),
        ("not utf-8", b'{"object":"\xff"}', None, 400),
        ("wrong object", b'{"object":"page","entry":[]}', None, 400),
        ("entry not a list", b'{"object":"whatsapp_business_account","entry":{}}', None, 400),
        ("top-level array", b"[]", None, 400),
        ("10,000-level nesting", b"[" * 10_000 + b"]" * 10_000, None, 400),
        ("nesting past the depth limit", b'{"a":' * 200 + b"1" + b"}" * 200, None, 400),
        ("wrong content type", WA, {"content-type": "text/plain"}, 415),
        ("no content type", WA, {"content-type": ""}, 415),
        ("oversize", b"{" + b" " * (64 * 1024) + b"}", None, 413),
    ],
)
def test_refused_whatsapp_requests_queue_nothing(
    client: httpx.Client,
    queues: QueueReader,
    name: str,
    body: bytes,
    headers: dict[str, str] | None,
    status: int,
) -> None:
    sent = headers if headers is not None else {**JSON, "x-hub-signature-256": whatsapp_signature(body)}
    response = client.post("/webhooks/whatsapp", content=body, headers=sent)
    assert response.status_code == status, (name, response.text)
    assert queues.depth(jobs.INBOUND_QUEUE) == 0


def test_oversize_streamed_body_without_length_is_refused(client: httpx.Client, queues: QueueReader) -> None:
    body = b'{"object":"whatsapp_business_account","entry":[' + b"0," * 40_000 + b"0]}"

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    headers = {**JSON, "x-hub-signature-256": whatsapp_signature(body)}
    response = client.post("/webhooks/whatsapp", content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert queues.depth(jobs.INBOUND_QUEUE) == 0


@pytest.mark.parametrize(
    ("name", "header_of", "status"),
    [
        ("missing", lambda body: None, 401),
        ("malformed", lambda body: "garbage", 401),
        ("no v1", lambda body: f"t={int(time.time())},v0=abc", 401),
        ("wrong secret", lambda body: stripe_header(body, "whsec_wrong"), 401),
        ("outside tolerance", lambda body: stripe_header(body, timestamp=int(time.time()) - 301), 401),
    ],
)
def test_refused_stripe_signatures_queue_nothing(
    client: httpx.Client, queues: QueueReader, name: str, header_of: object, status: int
) -> None:
    body = stripe_event()
    header = header_of(body)  # type: ignore[operator]
    headers = {**JSON, **({"stripe-signature": header} if header else {})}
    response = client.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == status, name
    assert queues.depth(jobs.BILLING_QUEUE) == 0


def test_stripe_wrong_shape_is_400(client: httpx.Client, queues: QueueReader) -> None:
    body = b'{"object":"customer","id":"cus_1"}'
    response = client.post(
        "/webhooks/stripe", content=body, headers={**JSON, "stripe-signature": stripe_header(body)}
    )
    assert response.status_code == 400
    assert queues.depth(jobs.BILLING_QUEUE) == 0


def test_verification_handshake(client: httpx.Client) -> None:
    ok = client.get(
        "/webhooks/whatsapp",
        params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"},
    )
    assert (ok.status_code, ok.text) == (200, "1158201444")
    assert ok.headers["content-type"].startswith("text/plain")
    wrong = client.get(
        "/webhooks/whatsapp",
        params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"},
    )
    assert wrong.status_code == 403
    missing = client.get("/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.challenge": "1"})
    assert missing.status_code == 403


def test_health_ready_and_metrics(client: httpx.Client, queues: QueueReader, ingress_app: IngressApp) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"rabbitmq": "ok", "postgres": "ok", "redis": "ok"}

    post_whatsapp(client, whatsapp_body())
    client.post("/webhooks/whatsapp", content=WA, headers=JSON)
    assert client.get("/metrics").status_code == 404  # served on the internal metrics port only
    text = generate_latest(ingress_app.state.metrics.registry).decode()
    assert 'adsapp_ingress_requests_total{route="/webhooks/whatsapp",status="200"}' in text
    assert 'adsapp_ingress_signature_failures_total{reason="missing",source="whatsapp"}' in text
    assert "adsapp_ingress_publish_seconds_bucket" in text
    assert "adsapp_ingress_body_bytes_bucket" in text
