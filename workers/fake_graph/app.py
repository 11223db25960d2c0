"""The fake Graph API: the send, media and template endpoints, plus a control API under /_fake.

Graph endpoints (bearer token required; any non-empty token works except the configured bad ones,
which get code 190):
    POST /{version}/{phone_number_id}/messages
    GET  /{version}/{media_id}                      metadata; `url` points at /_media/{media_id}
    GET  /_media/{media_id}                         bytes matching the (base64) sha256
    GET  /{version}/{waba_id}/message_templates     `limit` / `after` cursor paging

Control endpoints (no auth):
    POST   /_fake/faults     add a fault rule (see workers.fake_graph.faults); GET lists, DELETE clears
    POST   /_fake/reset      clear sends, counts and faults; {"all": true} also seeded data and config
    GET    /_fake/log        accepted sends, counts per (phone_number_id, biz_opaque_callback_data),
                             duplicates and request counts; ?summary=1 leaves out the sends and
                             counts, ?sends=0 only the sends
    POST   /_fake/config     bad_tokens, latency_ms, latency_jitter_ms (uniform ±), webhook_url,
                             app_secret, webhook_statuses, ...
    POST   /_fake/templates  {"waba_id", "templates": [...]} (replaces that account's templates)
    POST   /_fake/media      {"id", "mime_type", "file_size"}
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from workers.fake_graph.faults import TITLES, Fault, FaultSpecError, parse_fault
from workers.fake_graph.state import FakeConfig, FakeGraphState, MediaSeed
from workers.fake_graph.webhooks import WebhookSender

_trace_ids = itertools.count(1)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def meta_error(
    http_status: int,
    code: int,
    message: str | None = None,
    subcode: int | None = None,
    details: str | None = None,
) -> Response:
    error: dict[str, Any] = {
        "message": f"(#{code}) {message or TITLES.get(code, 'Error')}",
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": f"FakeTrace{next(_trace_ids)}",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    error["error_data"] = {
        "messaging_product": "whatsapp",
        "details": details or TITLES.get(code, message or ""),
    }
    return _json({"error": error}, http_status)


class _DroppedConnection(Response):
    """Starts an answer and breaks off mid-body: the server closes the connection."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"messaging_pro', "more_body": True})
        raise ConnectionAbortedError("connection dropped by a fault rule")


def create_app(config: FakeConfig | None = None, state: FakeGraphState | None = None) -> Starlette:
    """The ASGI app. `app.state.fake` is its FakeGraphState, for in-process tests."""
    fake = state or FakeGraphState(config)
    webhooks = WebhookSender()

    def authorized(request: Request) -> Response | None:
        return authorized_header(request.headers.get("authorization", ""))

    def authorized_header(header: str) -> Response | None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return meta_error(401, 190, "An access token is required to request this resource.")
        if token.strip() in fake.config.bad_tokens:
            return meta_error(401, 190, "Error validating access token: Session has expired")
        return None

    async def apply_faults(endpoint: str, pnid: str | None) -> Fault | None:
        latency, fault = fake.pick_faults(endpoint, pnid)
        if latency > 0:
            await asyncio.sleep(latency / 1000)
        return fault

    async def failure(fault: Fault) -> Response:
        if fault.kind == "timeout":
            await asyncio.sleep(fault.hang_seconds)
            # A caller still waiting hears from the gateway in front of Meta that gave up, as in
            # production: a bare 504, never Meta's error body, which would claim Meta refused the
            # send (it may have been accepted: `commit`).
            return PlainTextResponse("upstream request timeout", status_code=504)
        if fault.kind == "drop":
            return _DroppedConnection()
        return meta_error(fault.http_status, fault.code, fault.message, fault.subcode, fault.details)

    async def send_message(pnid: str, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /{version}/{phone_number_id}/messages, straight on ASGI: at a thousand sends a
        second Starlette's request objects and routing would cost more CPU than the fleet's
        side of the call, and the benchmark measures the fleet."""
        fake.count_request("messages", pnid)
        denied = authorized_header(_header(scope, b"authorization"))
        if denied is not None:
            return await denied(scope, receive, send)
        fault = await apply_faults("messages", pnid)
        if fault is not None and not (fault.kind in ("timeout", "drop") and fault.commit):
            return await (await failure(fault))(scope, receive, send)
        payload: Any = None
        invalid: str | None = "body is not JSON"
        try:
            payload = orjson.loads(await _body(receive))
        except orjson.JSONDecodeError:
            pass
        else:
            invalid = _invalid_send(payload)
        if invalid is not None:
            return await meta_error(400, 100, "Invalid parameter", details=invalid)(scope, receive, send)
        to = payload["to"]
        wamid = fake.new_wamid(to)
        record = fake.record_send(pnid, payload, wamid)
        webhooks.schedule(fake.config, record)
        if fault is not None:  # a committed timeout or drop: sent, but the caller never hears
            return await (await failure(fault))(scope, receive, send)
        message: dict[str, str] = {"id": wamid}
        if record.type == "template":
            message["message_status"] = "accepted"
        body = orjson.dumps(
            {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}], "messages": [message]}
        )
        await send({"type": "http.response.start", "status": 200, "headers": _json_headers(len(body))})
        await send({"type": "http.response.body", "body": body})

    async def get_media(request: Request) -> Response:
        media_id = request.path_params["media_id"]
        fake.count_request("media", media_id)
        denied = authorized(request)
        if denied is not None:
            return denied
        fault = await apply_faults("media", None)
        if fault is not None:
            return await failure(fault)
        content = fake.media_bytes(media_id)
        return _json(
            {
                "messaging_product": "whatsapp",
                "url": f"{str(request.base_url).rstrip('/')}/_media/{media_id}",
                "mime_type": fake.media_mime(media_id),
                # As Meta writes it: base64 of the digest, not hex.
                "sha256": base64.b64encode(hashlib.sha256(content).digest()).decode(),
                "file_size": len(content),
                "id": media_id,
            }
        )

    async def download_media(request: Request) -> Response:
        media_id = request.path_params["media_id"]
        fake.count_request("download", media_id)
        denied = authorized(request)
        if denied is not None:
            return denied
        fault = await apply_faults("download", None)
        if fault is not None:
            return await failure(fault)
        return Response(fake.media_bytes(media_id), media_type=fake.media_mime(media_id))

    async def list_templates(request: Request) -> Response:
        waba_id = request.path_params["waba_id"]
        fake.count_request("templates", waba_id)
        denied = authorized(request)
        if denied is not None:
            return denied
        fault = await apply_faults("templates", None)
        if fault is not None:
            return await failure(fault)
        templates = fake.templates.get(waba_id, [])
        try:
            limit = max(1, min(int(request.query_params.get("limit", "25")), 1000))
            start = _decode_cursor(request.query_params.get("after")) + 1
        except ValueError:
            return meta_error(400, 100, "Invalid parameter", details="bad limit or after cursor")
        page = templates[start : start + limit]
        body: dict[str, Any] = {"data": page}
        if page:
            paging: dict[str, Any] = {
                "cursors": {"before": _encode_cursor(start), "after": _encode_cursor(start + len(page) - 1)}
            }
            if start + len(page) < len(templates):
                after = _encode_cursor(start + len(page) - 1)
                paging["next"] = str(request.url.include_query_params(limit=limit, after=after))
            body["paging"] = paging
        return _json(body)

    # -- control ------------------------------------------------------------------------------

    async def add_fault(request: Request) -> Response:
        try:
            fault = parse_fault(orjson.loads(await request.body()), fake.next_fault_id())
        except (orjson.JSONDecodeError, FaultSpecError) as exc:
            return _json({"error": str(exc)}, 400)
        fake.faults.append(fault)
        return _json(fault.as_json(), 201)

    async def list_faults(request: Request) -> Response:
        return _json([fault.as_json() for fault in fake.faults])

    async def clear_faults(request: Request) -> Response:
        fake.faults.clear()
        return _json({"cleared": True})

    async def reset(request: Request) -> Response:
        raw = await request.body()
        options = orjson.loads(raw) if raw.strip() else {}
        fake.reset(everything=bool(isinstance(options, dict) and options.get("all")))
        return _json({"reset": True})

    async def log(request: Request) -> Response:
        summary = request.query_params.get("summary") not in (None, "", "0", "false")
        # `sends=0`: the counts without every send's payload, for callers polling a long run.
        with_sends = request.query_params.get("sends") not in ("0", "false")
        body = fake.log_json(summary=summary, phone_number_id=request.query_params.get("phone_number_id"),
                             with_sends=with_sends)  # fmt: skip
        body["webhooks"] = {"delivered": webhooks.delivered, "failed": webhooks.failed}
        return _json(body)

    async def configure(request: Request) -> Response:
        options = orjson.loads(await request.body())
        if not isinstance(options, dict):
            return _json({"error": "config is a JSON object"}, 400)
        config = fake.config
        if "bad_tokens" in options:
            config.bad_tokens = {str(token) for token in options["bad_tokens"]}
        for name in ("latency_ms", "latency_jitter_ms", "webhook_delay_ms"):
            if name in options:
                setattr(config, name, float(options[name]))
        for name in ("webhook_url", "app_secret", "waba_id"):
            if name in options:
                setattr(config, name, None if options[name] is None else str(options[name]))
        if "webhook_statuses" in options:
            config.webhook_statuses = tuple(str(status) for status in options["webhook_statuses"])
        return _json(
            {
                "latency_ms": config.latency_ms,
                "latency_jitter_ms": config.latency_jitter_ms,
                "webhook_url": config.webhook_url,
                "webhook_statuses": list(config.webhook_statuses),
                "webhook_delay_ms": config.webhook_delay_ms,
                "waba_id": config.waba_id,
            }
        )

    async def seed_templates(request: Request) -> Response:
        body = orjson.loads(await request.body())
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("templates"), list)
            or not body.get("waba_id")
        ):
            return _json({"error": 'expected {"waba_id": ..., "templates": [...]}'}, 400)
        templates = [dict(t, id=t.get("id") or f"tmpl-{i}") for i, t in enumerate(body["templates"], 1)]
        fake.templates[str(body["waba_id"])] = templates
        return _json({"waba_id": body["waba_id"], "count": len(templates)})

    async def seed_media(request: Request) -> Response:
        body = orjson.loads(await request.body())
        if not isinstance(body, dict) or not body.get("id"):
            return _json({"error": 'expected {"id": ..., "mime_type": ..., "file_size": ...}'}, 400)
        size = body.get("file_size")
        fake.media[str(body["id"])] = MediaSeed(
            mime_type=str(body.get("mime_type", "image/jpeg")), file_size=None if size is None else int(size)
        )
        return _json({"id": body["id"]})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await webhooks.aclose()

    routes = [
        # Control routes first: /{version}/{media_id} would otherwise swallow /_fake/log.
        Route("/_fake/faults", add_fault, methods=["POST"]),
        Route("/_fake/faults", list_faults, methods=["GET"]),
        Route("/_fake/faults", clear_faults, methods=["DELETE"]),
        Route("/_fake/reset", reset, methods=["POST"]),
        Route("/_fake/log", log, methods=["GET"]),
        Route("/_fake/config", configure, methods=["POST"]),
        Route("/_fake/templates", seed_templates, methods=["POST"]),
        Route("/_fake/media", seed_media, methods=["POST"]),
        Route("/_media/{media_id}", download_media, methods=["GET"]),
        Route("/{version}/{waba_id}/message_templates", list_templates, methods=["GET"]),
        Route("/{version}/{media_id}", get_media, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, middleware=[Middleware(_SendRoute, send_message=send_message)]
    )
    app.state.fake = fake
    return app


SendHandler = Callable[[str, Scope, Receive, Send], Awaitable[None]]


class _SendRoute:
    """Routes `POST /{version}/{phone_number_id}/messages` to the send handler before Starlette's
    router sees it; everything else goes on to the app."""

    def __init__(self, app: ASGIApp, send_message: SendHandler) -> None:
        self._app = app
        self._send_message = send_message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            parts = scope["path"].split("/")
            if len(parts) == 4 and parts[3] == "messages" and parts[1] and not parts[1].startswith("_"):
                return await self._send_message(parts[2], scope, receive, send)
        await self._app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _invalid_send(payload: Any) -> str | None:
    if not isinstance(payload, dict) or payload.get("messaging_product") != "whatsapp":
        return "messaging_product must be whatsapp"
    to = payload.get("to")
    if not isinstance(to, str) or not to:
        return "to is required"
    return None


def _json_headers(length: int) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]


def _encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"i:{index}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int:
    """The index of the item a cursor names; -1 (before the first) when there is none."""
    if not cursor:
        return -1
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    if not raw.startswith("i:"):
        raise ValueError("not a cursor of ours")
    return int(raw[2:])
