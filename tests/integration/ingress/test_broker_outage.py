"""Broker outages answer 503 quickly (so Meta and Stripe retry), and the next POST after the broker is
back is queued. The shared RabbitMQ is never stopped: the app reaches it through a proxy we cut."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from domain import jobs
from ingress.app import create_app
from tests.integration.ingress.support import (
    QueueReader,
    TcpProxy,
    UvicornThread,
    wait_for,
    whatsapp_body,
    whatsapp_signature,
)
from tests.support.ingress import make_settings

pytestmark = pytest.mark.integration

BOUND_SECONDS = 2.5


def post(client: httpx.Client, body: bytes) -> httpx.Response:
    headers = {"content-type": "application/json", "x-hub-signature-256": whatsapp_signature(body)}
    return client.post("/webhooks/whatsapp", content=body, headers=headers)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_broker_answers_503_and_readyz_names_it() -> None:
    dead = f"amqp://guest:guest@127.0.0.1:{unused_port()}/%2F"
    app = create_app(make_settings(dead), configure_logs=False)
    with UvicornThread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        started = time.monotonic()
        response = post(client, whatsapp_body())
        assert response.status_code == 503
        assert time.monotonic() - started < BOUND_SECONDS
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["failing"] == ["rabbitmq"]
        assert client.get("/healthz").status_code == 200


@pytest.fixture
def proxy(vhost_url: str) -> Iterator[TcpProxy]:
    parts = urlsplit(vhost_url)
    relay = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    relay.start()
    yield relay
    relay.stop()


def test_dropped_connection_answers_503_then_reconnects(
    vhost_url: str, proxy: TcpProxy, queues: QueueReader
) -> None:
    parts = urlsplit(vhost_url)
    via_proxy = parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}").geturl()
    app = create_app(make_settings(via_proxy), configure_logs=False)
    publisher = app.state.publisher
    with UvicornThread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert wait_for(publisher.is_ready, 10)
        assert post(client, whatsapp_body("before")).status_code == 200

        proxy.cut()
        assert wait_for(lambda: not publisher.is_ready(), 5), "connection loss not noticed"
        started = time.monotonic()
        response = post(client, whatsapp_body("during"))
        assert response.status_code == 503
        assert time.monotonic() - started < BOUND_SECONDS
        assert client.get("/readyz").json()["failing"] == ["rabbitmq"]

        proxy.restore()
        assert wait_for(publisher.is_ready, 10), "did not reconnect"
        assert post(client, whatsapp_body("after")).status_code == 200

    texts = [message["args"][0] for _, message in queues.take_all(jobs.INBOUND_QUEUE)]
    assert len(texts) == 2
    assert '"before"' in texts[0]
    assert '"after"' in texts[1]


def test_confirm_timeout_answers_503_within_the_bound(
    vhost_url: str, proxy: TcpProxy, queues: QueueReader
) -> None:
    """A broker that stops answering (connection open, no confirm) is bounded by the publish timeout."""
    parts = urlsplit(vhost_url)
    via_proxy = parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}").geturl()
    app = create_app(make_settings(via_proxy, publish_timeout_seconds=0.5), configure_logs=False)
    with UvicornThread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert wait_for(app.state.publisher.is_ready, 10)
        proxy.freeze()
        started = time.monotonic()
        response = post(client, whatsapp_body())
        elapsed = time.monotonic() - started
        proxy.thaw()
        assert response.status_code == 503
        assert 0.4 < elapsed < 0.5 + BOUND_SECONDS
