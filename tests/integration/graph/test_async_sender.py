"""The event loop's Graph API client reads every answer it is given: it asks for an uncompressed
one (it reads answers undecoded), and whatever header it leaves to aiohttp would cost it aiohttp's
slow path on every request."""

from __future__ import annotations

import asyncio
import gzip

import orjson
import pytest
from aiohttp import web

from workers.graph.async_client import USER_AGENT, AsyncGraphSender

pytestmark = pytest.mark.integration

_ANSWER = {"messaging_product": "whatsapp", "contacts": [{"input": "15550001", "wa_id": "15550001"}],
           "messages": [{"id": "wamid.ok"}]}  # fmt: skip


async def _send_to_a_compressing_server() -> tuple[str, dict[str, str]]:
    seen: dict[str, str] = {}

    async def messages(request: web.Request) -> web.Response:
        seen.update(request.headers)
        body = orjson.dumps(_ANSWER)
        # A server compresses whenever the request allows it, as Meta's front end does.
        if "gzip" in request.headers.get("Accept-Encoding", "gzip"):
            return web.Response(body=gzip.compress(body), content_type="application/json",
                                headers={"Content-Encoding": "gzip"})  # fmt: skip
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v21.0/{pnid}/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sender = AsyncGraphSender(f"http://127.0.0.1:{port}", "v21.0")
    await sender.start()
    try:
        result = await sender.send(
            "1001", "token", {"to": "15550001", "type": "text", "text": {"body": "hi"}}
        )
    finally:
        await sender.close()
        await runner.cleanup()
    return result.wamid, seen


def test_a_server_that_compresses_when_asked_still_gives_a_readable_wamid() -> None:
    wamid, headers = asyncio.run(_send_to_a_compressing_server())
    assert wamid == "wamid.ok"
    assert headers["Accept-Encoding"] == "identity"
    assert headers["User-Agent"] == USER_AGENT

    assert headers["Authorization"] == "Bearer token"
