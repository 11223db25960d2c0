"""The fake's optional status webhooks: Meta's shape, signed with the app secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.fake_graph import RunningFakeGraph
from workers.graph.client import GraphClient

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[bytes, str]]]]:
    received: list[tuple[bytes, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body, self.headers.get("X-Hub-Signature-256", "")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/webhooks/whatsapp", received
    server.shutdown()
    server.server_close()


def test_each_accepted_send_gets_signed_status_webhooks(
    fake: RunningFakeGraph, receiver: tuple[str, list[tuple[bytes, str]]]
) -> None:
    url, received = receiver
    fake.configure(webhook_url=url, app_secret="s3cret", waba_id="waba-9")
    with GraphClient(fake.url, "v21.0") as graph:
        sent = graph.send_message(
            "111", "tok", {"to": "15550100", "type": "text", "biz_opaque_callback_data": "m"}
        )
    deadline = time.monotonic() + 5
    while len(received) < 3:
        assert time.monotonic() < deadline, received
        time.sleep(0.01)
    statuses = []
    for body, signature in received:
        assert signature == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        payload = json.loads(body)
        assert payload["object"] == "whatsapp_business_account" and payload["entry"][0]["id"] == "waba-9"
        value = payload["entry"][0]["changes"][0]["value"]
        assert value["metadata"]["phone_number_id"] == "111"
        status = value["statuses"][0]
        assert (status["id"], status["recipient_id"], status["biz_opaque_callback_data"]) == (
            sent.wamid,
            "15550100",
            "m",
        )
        statuses.append(status["status"])
    assert sorted(statuses) == ["delivered", "read", "sent"]
