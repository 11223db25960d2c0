"""The webhook routes: limit, verify, check, publish, and answer 200 only for a confirmed publish.

Order matters: nothing is parsed before the signature holds, nothing is queued before the envelope
holds, and every refusal is final for that request (nothing was queued). Anything that is not the
sender's fault, a broker outage above all, answers 503 so Meta and Stripe deliver again.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from config.logging import request_id_var
from ingress import http
from ingress.ids import new_id
from ingress.message import encode_message
from ingress.metrics import Metrics
from ingress.payload import InvalidBody, parse_json
from ingress.publisher import Publisher, PublishFailed
from services import queue_traffic, webhook_answers
from services.fleet_counters import Counts
from services.telemetry import tracing

logger = logging.getLogger(__name__)

_REQUEST_ID: Final = b"x-request-id"
_CONTENT_TYPE: Final = b"content-type"
_CONTENT_LENGTH: Final = b"content-length"

_QUEUED: Final = b'{"status":"queued"}'


class Verifier(Protocol):
    def check(self, header: bytes | None, body: bytes) -> str | None: ...


@dataclass(frozen=True, slots=True)
class WebhookSource:
    name: str  # metric label and log field: "whatsapp", "stripe"
    queue_name: str
    actor_name: str
    signature_header: bytes
    verifier: Verifier
    check_shape: Callable[[Any], None]


class WebhookRoute:
    """A raw ASGI endpoint for one webhook source (POST), plus Meta's handshake (GET) when given."""

    def __init__(
        self,
        source: WebhookSource,
        *,
        publisher: Publisher,
        metrics: Metrics,
        max_body_bytes: int,
        max_json_depth: int,
        path: str,
        verify_token: str | None = None,
        counters: Counts | None = None,
    ) -> None:
        self._source = source
        # The fleet-wide counts of answers and publishes the console shows (in memory; see there).
        self._counters = counters
        self._publisher = publisher
        self._metrics = metrics
        self._max_body_bytes = max_body_bytes
        self._max_json_depth = max_json_depth
        self._verify_token = verify_token.encode() if verify_token is not None else None
        self._path = path
        self._wanted = frozenset({_REQUEST_ID, _CONTENT_TYPE, _CONTENT_LENGTH, source.signature_header})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "POST":
            await self._post(scope, receive, send)
        elif self._verify_token is not None and scope["method"] in ("GET", "HEAD"):
            await self._handshake(scope, send)
        else:
            await http.respond(send, 405, b'{"error":"method_not_allowed"}')

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> None:
        received_at = time.time()
        headers = http.header_map(scope, self._wanted)
        request_id = http.request_id_from(headers.get(_REQUEST_ID))
        token = request_id_var.set(request_id)
        try:
            await self._accept(headers, request_id, received_at, receive, send)
        finally:
            request_id_var.reset(token)

    async def _accept(
        self, headers: dict[bytes, bytes], request_id: str, received_at: float, receive: Receive, send: Send
    ) -> None:
        source = self._source

        if not http.is_json_content_type(headers.get(_CONTENT_TYPE)):
            await self._reject_body(send, request_id, 415, "content_type")
            return
        declared = http.declared_length(headers.get(_CONTENT_LENGTH))
        if declared is not None and declared > self._max_body_bytes:
            await self._reject_body(send, request_id, 413, "too_large")
            return
        try:
            raw = await http.read_body(receive, self._max_body_bytes)
        except http.BodyTooLarge:
            await self._reject_body(send, request_id, 413, "too_large")
            return
        except http.ClientGone:
            return
        self._metrics.observe(self._metrics.body_size, len(raw), source.name)

        try:
            failure = source.verifier.check(headers.get(source.signature_header), raw)
            if failure is not None:
                self._metrics.inc(self._metrics.signature_failures, source.name, failure)
                logger.warning("webhook signature refused", extra={"source": source.name, "reason": failure})
                await self._respond(send, 401, b'{"error":"invalid_signature"}', request_id)
                return
            text, document = parse_json(raw, self._max_json_depth)
            source.check_shape(document)
        except InvalidBody as exc:
            await self._reject_body(send, request_id, 400, exc.reason, str(exc))
            return

        message_id = new_id()
        span = tracing.start_producer(source.queue_name, message_id)
        message = encode_message(
            queue_name=source.queue_name,
            actor_name=source.actor_name,
            body=text,
            received_at=received_at,
            request_id=request_id,
            message_id=message_id,
            trace_context=tracing.carrier(span) if span is not None else None,
        )
        started = time.perf_counter()
        try:
            await self._publisher.publish(source.queue_name, message, message_id)
        except PublishFailed as exc:
            if span is not None:
                tracing.end_failed(span, exc.reason)
            self._metrics.inc(self._metrics.publish_failures, source.queue_name, exc.reason)
            logger.error(
                "webhook not queued; asking the sender to retry",
                extra={"source": source.name, "reason": exc.reason, "error": str(exc)},
            )
            await self._respond(send, 503, b'{"error":"queue_unavailable"}', request_id)
            return
        if span is not None:
            span.end()
        if self._counters is not None:
            queue_traffic.count_in(self._counters, source.queue_name)
        self._metrics.observe(self._metrics.publish_latency, time.perf_counter() - started, source.queue_name)
        await self._respond(send, 200, _QUEUED, request_id)

    async def _reject_body(
        self, send: Send, request_id: str, status: int, reason: str, detail: str = ""
    ) -> None:
        self._metrics.inc(self._metrics.rejected_bodies, self._source.name, reason)
        logger.warning(
            "webhook body refused",
            extra={"source": self._source.name, "reason": reason, "status": status, "detail": detail[:200]},
        )
        await self._respond(send, status, b'{"error":"%s"}' % reason.encode(), request_id)

    async def _respond(self, send: Send, status: int, body: bytes, request_id: str) -> None:
        # POSTs are dispatched ahead of the metrics middleware, so they count their own answers.
        self._metrics.count_request(self._path, status)
        if self._counters is not None:
            webhook_answers.count_answer(self._counters, self._source.name, status)
        await http.respond(send, status, body, request_id)

    async def _handshake(self, scope: Scope, send: Send) -> None:
        """Meta's subscription check: echo hub.challenge only to the holder of the verify token."""
        assert self._verify_token is not None
        query = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        mode = query.get("hub.mode", [""])[0]
        token = query.get("hub.verify_token", [""])[0].encode()
        challenge = query.get("hub.challenge", [""])[0]
        if mode != "subscribe" or not hmac.compare_digest(token, self._verify_token):
            logger.warning("webhook verification refused", extra={"source": self._source.name})
            await http.respond(send, 403, b"forbidden", content_type=http.TEXT)
            return
        if not challenge:
            await http.respond(send, 400, b"missing hub.challenge", content_type=http.TEXT)
            return
        await http.respond(send, 200, challenge.encode(), content_type=http.TEXT)
