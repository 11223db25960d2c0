"""Graph API sends on an event loop: hundreds in flight per process over one aiohttp pool.

The error policy is the blocking client's (`workers.graph.client`): what provably never left
(no connection, a refused or timed-out connect, no free pooled connection in time) is transient
and retried inside the call when quick to clear; anything after the request may have left (read
timeout, reset, truncated answer, a gateway's 502/504 or a 5xx without Meta's error body, a 2xx
without a wamid) is `GraphAmbiguousOutcome` and never retried. aiohttp rather than
`httpx.AsyncClient`: the latter's pool spends milliseconds of CPU per request at a few hundred in
flight (encode/httpx#3215), more than the rest of a send.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
import yarl
from opentelemetry import trace

from domain.errors import FleetError, GraphAmbiguousOutcome, GraphApiTransient, GraphErrorInfo, InvalidPayload
from services.telemetry import tracing
from workers.graph.client import QUICK_RETRY_CODES
from workers.graph.models import SendResult
from workers.graph.translate import send_error_from_status

_tracer = trace.get_tracer(__name__)

USER_AGENT = "adsapp-fleet"

# Before the request was written: nothing can have reached Meta.
_NEVER_SENT: tuple[type[BaseException], ...] = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


class AsyncGraphSender:
    """Make it and `await start()` on the loop it will send from; `await close()` on that loop."""

    def __init__(
        self,
        base_url: str,
        version: str,
        *,
        max_connections: int = 512,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        retry_attempts: int = 3,
        retry_initial_wait: float = 0.1,
        retry_max_wait: float = 1.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.version = version.strip("/")
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
        self._attempts = max(1, retry_attempts)
        self._initial_wait = retry_initial_wait
        self._max_wait = retry_max_wait
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, yarl.URL] = {}

    async def start(self) -> None:
        # Keep-alive a little under common server timeouts, so a pooled connection is rarely
        # reused just as the server closes it (which would make a send ambiguous).
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, keepalive_timeout=4.0, ttl_dns_cache=300
        )
        # No cookie jar: the Graph API sets none worth keeping, and a jar filters every request.
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, trust_env=False, auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )  # fmt: skip

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, phone_number_id: str, access_token: str, payload: Mapping[str, Any]) -> SendResult:
        """POST /{version}/{phone_number_id}/messages; raises the domain's send errors."""
        if not access_token:
            raise InvalidPayload("an access token is required for Graph API calls")
        body = payload if "messaging_product" in payload else {"messaging_product": "whatsapp", **payload}
        content = orjson.dumps(body)
        url = self._urls.get(phone_number_id)
        if url is None:
            # Parsed once per number: aiohttp parses a string URL on every request.
            url = yarl.URL(f"{self.base_url}/{self.version}/{phone_number_id}/messages")
            self._urls[phone_number_id] = url
        # Every header aiohttp would add is given, which keeps it on its fast path. The answer is
        # read undecoded (`auto_decompress=False`), so it must come uncompressed: aiohttp's default
        # Accept-Encoding would let a compressed 200 read as one without a wamid (ambiguous).
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Authorization": f"Bearer {access_token}",
        }
        wait = self._initial_wait
        for attempt in range(1, self._attempts + 1):
            try:
                return await self._post(url, content, headers, phone_number_id)
            except GraphApiTransient as exc:
                quick = exc.info.code is None or exc.info.code in QUICK_RETRY_CODES
                if not quick or attempt == self._attempts:
                    raise
            await asyncio.sleep(min(wait, self._max_wait) + random.uniform(0, self._initial_wait))
            wait *= 2
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _post(self, url: yarl.URL, content: bytes, headers: dict[str, str], pnid: str) -> SendResult:
        if self._session is None:
            raise RuntimeError("AsyncGraphSender.start() was not awaited")
        try:
            # Even OpenTelemetry's no-op span costs a twentieth of a send's CPU: none unless tracing.
            exchange = _traced_exchange if tracing.enabled() else _exchange
            status, reason, raw = await exchange(self._session, url, content, headers)
        except _NEVER_SENT as exc:
            raise _transient(exc) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise GraphAmbiguousOutcome(f"{type(exc).__name__}: {exc}".rstrip(": "), pnid) from exc
        data = _json(raw)
        if status >= 300 or status < 200:
            raise _error(status, reason, data, pnid)
        return parse_send_answer(status, data, pnid)


async def _exchange(
    session: aiohttp.ClientSession, url: yarl.URL, content: bytes, headers: dict[str, str]
) -> tuple[int, str, bytes]:
    """POST and read the whole answer: status, reason, body."""
    async with session.post(url, data=content, headers=headers) as response:
        return response.status, response.reason or "", await response.read()


async def _traced_exchange(
    session: aiohttp.ClientSession, url: yarl.URL, content: bytes, headers: dict[str, str]
) -> tuple[int, str, bytes]:
    # The HTTP client span of the call (the blocking client's come from httpx's instrumentation).
    attributes = {"http.request.method": "POST", "url.full": str(url)}
    with _tracer.start_as_current_span("POST", kind=trace.SpanKind.CLIENT, attributes=attributes) as span:
        answer = await _exchange(session, url, content, headers)
        span.set_attribute("http.response.status_code", answer[0])
        return answer


def parse_send_answer(status: int, data: Any, phone_number_id: str) -> SendResult:
    """A 2xx answer: Meta accepted the message, so a missing wamid is ambiguous, never a reason
    to send again."""
    try:
        message = data["messages"][0]
        wamid = message["id"]
        contacts = data.get("contacts") or [{}]
        contact = contacts[0] if isinstance(contacts[0], dict) else {}
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise GraphAmbiguousOutcome(f"HTTP {status} without a readable wamid", phone_number_id) from exc
    if not isinstance(wamid, str) or not wamid:
        raise GraphAmbiguousOutcome(f"HTTP {status} with an empty wamid", phone_number_id)
    state = message.get("message_status")
    wa_id, given = contact.get("wa_id"), contact.get("input")
    return SendResult(
        wamid=wamid,
        wa_id=wa_id if isinstance(wa_id, str) else None,
        input=given if isinstance(given, str) else None,
        message_status=state if isinstance(state, str) else None,
    )


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def _error(status: int, reason: str, data: Any, pnid: str) -> FleetError:
    return send_error_from_status(status, reason, data, pnid)


def _transient(exc: BaseException) -> GraphApiTransient:
    return GraphApiTransient(GraphErrorInfo(code=None, title=f"{type(exc).__name__}: {exc}".rstrip(": ")))
