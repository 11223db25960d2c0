"""Status webhooks (sent, delivered, read) for accepted sends, in Meta's shape and signed.

Off unless `webhook_url` is configured. Each status is its own POST, signed with
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body with the app secret>`, as Meta does.
Failures are counted, not retried: the fake is a test double, not a delivery system.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import httpx
import orjson

from workers.fake_graph.state import FakeConfig, SendRecord


def status_payload(config: FakeConfig, send: SendRecord, status: str, timestamp: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": send.wamid,
        "status": status,
        "timestamp": str(timestamp),
        "recipient_id": send.to,
        "conversation": {"id": f"conv-{send.phone_number_id}-{send.to}", "origin": {"type": "service"}},
        "pricing": {"billable": True, "pricing_model": "PMP", "category": "service"},
    }
    if send.marker is not None:
        entry["biz_opaque_callback_data"] = send.marker
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": config.waba_id,
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": send.phone_number_id,
                                "phone_number_id": send.phone_number_id,
                            },
                            "statuses": [entry],
                        },
                    }
                ],
            }
        ],
    }


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# Posts in flight at once. Past this, a burst of sends (a frozen worker group resuming, a broadcast)
# would queue thousands of requests inside the HTTP client's pool, whose bookkeeping grows with the
# queue and kept the event loop, and so the fake's own answers, busy for tens of seconds; waiting on
# a semaphore costs nothing.
WEBHOOK_CONCURRENCY = 32


class WebhookSender:
    """Fires status webhooks from the server's event loop; keeps its tasks so none is collected."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(WEBHOOK_CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.failed = 0

    def schedule(self, config: FakeConfig, send: SendRecord) -> None:
        if not config.webhook_url:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(config, send))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, config: FakeConfig, send: SendRecord) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=5.0)
        url = config.webhook_url
        assert url is not None
        for status in config.webhook_statuses:
            if config.webhook_delay_ms > 0:
                await asyncio.sleep(config.webhook_delay_ms / 1000)
            body = orjson.dumps(status_payload(config, send, status, int(time.time())))
            headers = {
                "Content-Type": "application/json",
                "X-Hub-Signature-256": sign(body, config.app_secret),
            }
            try:
                async with self._slots:
                    response = await self._client.post(url, content=body, headers=headers)
            except httpx.HTTPError:
                self.failed += 1
                continue
            if response.is_success:
                self.delivered += 1
            else:
                self.failed += 1

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
