"""The WhatsApp Cloud API (Graph API) client: one `httpx.Client` per process, domain errors out.

Error policy (every failure leaves as a `domain.errors` class, never an httpx exception):

- Meta error body (`{"error": {"message", "type", "code", "error_subcode", "error_data":
  {"details"}, "fbtrace_id"}}`) becomes a `GraphErrorInfo`, raised as `GraphApiTransient` or
  `GraphApiPermanent` by `domain.errors.classify_graph_error` (throttling codes, 5xx and unknown
  server trouble are transient; 190/10/200 are AUTH and raised as permanent; every other code,
  such as 131047 or 132000, is permanent for that message).
- Connection trouble before the request left (connect error or timeout, no pool slot) is
  `GraphApiTransient`.
- For a send, trouble after the request may have left (read timeout, reset, truncated answer, a
  2xx without a wamid, a 502/504 or a 5xx without Meta's error body, which is a proxy talking)
  is `GraphAmbiguousOutcome`: Meta may have delivered it, so it is never
  retried here and the caller records it instead of sending again. For reads (media, templates)
  the same failures are merely transient.

Retries inside one call (tenacity, exponential backoff with jitter, `retry_attempts` tries in all,
each wait capped at `retry_max_wait`) only for failures that are safe to repeat and likely to clear
within a second: transient transport failures where nothing was sent, Meta's 5xx service codes
(1, 2, 131000, 131016), and 130429 (per-number throughput). Longer throttles (4 app, 80007 account,
131048 spam, 131056 pair rate, 133016) are raised at once: waiting them out is the caller's job
(re-enqueue with a delay), not a worker thread's. Permanent, auth and ambiguous failures are never
retried.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from config.settings import Settings
from domain.errors import (
    FleetError,
    GraphAmbiguousOutcome,
    GraphApiPermanent,
    GraphApiTransient,
    GraphErrorInfo,
    InvalidPayload,
)
from workers.graph.models import MediaInfo, SendResult
from workers.graph.translate import (
    error_from_response,
    send_error_from_status,
    send_failure,
    transport_failure,
)

DEFAULT_TIMEOUT = httpx.Timeout(connect=3.0, read=10.0, write=5.0, pool=2.0)
# WhatsApp's largest media (documents) is 100 MB.
DEFAULT_MAX_MEDIA_BYTES = 100 * 1024 * 1024
# Transient Meta codes that clear quickly enough to be worth a second try inside the call.
QUICK_RETRY_CODES = frozenset({1, 2, 131000, 131016, 130429})
MAX_TEMPLATE_PAGES = 1000
# A thread sends one request at a time; the second connection only covers one being replaced.
_PER_THREAD_CONNECTIONS = 2


def _worth_retrying_now(exc: BaseException) -> bool:
    if not isinstance(exc, GraphApiTransient):
        return False
    return exc.info.code is None or exc.info.code in QUICK_RETRY_CODES


class GraphClient:
    """Thread-safe; build one at process boot and share it. Closing it closes its connections."""

    def __init__(
        self,
        base_url: str,
        version: str,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        max_connections: int = 100,
        retry_attempts: int = 3,
        retry_initial_wait: float = 0.1,
        retry_max_wait: float = 1.0,
        max_media_bytes: int = DEFAULT_MAX_MEDIA_BYTES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.version = version.strip("/")
        self.max_media_bytes = max_media_bytes
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._transport = transport or self._new_transport(max_connections)
        # Sends go through a transport of the calling thread's own, unless one was given: one pool
        # shared by every worker thread serialises them on its lock and walks all its connections
        # for each request, which cost more CPU than the request itself.
        self._given_transport = transport
        self._own = threading.local()
        self._thread_transports: list[httpx.HTTPTransport] = []
        self._transports_lock = threading.Lock()
        # Proxies are not taken from the environment: sends go straight to the transport (below),
        # and every call of this client should take the same way.
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=self._timeout,
            transport=self._transport,
            headers={"Accept": "application/json"},
            follow_redirects=False,
            trust_env=False,
        )
        self._send_urls: dict[str, httpx.URL] = {}
        self._retrying = Retrying(
            stop=stop_after_attempt(max(1, retry_attempts)),
            wait=wait_exponential(multiplier=retry_initial_wait, max=retry_max_wait)
            + wait_random(0, retry_initial_wait),
            retry=retry_if_exception(_worth_retrying_now),
            reraise=True,
        )

    @staticmethod
    def _new_transport(max_connections: int) -> httpx.HTTPTransport:
        # Keep-alive a little under common server timeouts, so a pooled connection is rarely
        # reused just as the server closes it (which would make a send ambiguous).
        return httpx.HTTPTransport(
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=4.0,
            ),
        )

    def _send_transport(self) -> httpx.BaseTransport:
        if self._given_transport is not None:
            return self._given_transport
        transport: httpx.HTTPTransport | None = getattr(self._own, "transport", None)
        if transport is None:
            transport = self._own.transport = self._new_transport(_PER_THREAD_CONNECTIONS)
            with self._transports_lock:
                self._thread_transports.append(transport)
        return transport

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> GraphClient:
        """The client for `config.settings.Settings` (GRAPH_API_URL, GRAPH_API_VERSION)."""
        return cls(settings.graph_api_url, settings.graph_api_version, **overrides)

    def close(self) -> None:
        self._http.close()
        with self._transports_lock:
            transports, self._thread_transports = self._thread_transports, []
        for transport in transports:
            transport.close()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- sends --------------------------------------------------------------------------------

    def send_message(self, phone_number_id: str, access_token: str, payload: dict[str, Any]) -> SendResult:
        """POST /{version}/{phone_number_id}/messages.

        `payload` is the Cloud API body; `messaging_product` is filled in when missing. Raises
        `GraphApiTransient`, `GraphApiPermanent` or `GraphAmbiguousOutcome` (see module docstring).
        """
        body = payload if "messaging_product" in payload else {"messaging_product": "whatsapp", **payload}
        content = orjson.dumps(body)
        url = self._send_urls.get(phone_number_id)
        if url is None:
            url = self._send_urls[phone_number_id] = httpx.URL(
                f"{self.base_url}/{self.version}/{phone_number_id}/messages"
            )
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            **_auth(access_token),
        }
        timeout = self._timeout.as_dict()
        transport = self._send_transport()

        def attempt() -> SendResult:
            # Straight to the transport: the client's URL merging, cookie jar, auth and redirect
            # handling cost more CPU than the request itself at a thousand sends a second, and a
            # send uses none of them.
            request = httpx.Request(
                "POST", url, content=content, headers=headers, extensions={"timeout": timeout}
            )
            try:
                response = transport.handle_request(request)
                response.request = request
                try:
                    response.read()
                finally:
                    response.close()
            except httpx.HTTPError as exc:
                raise send_failure(exc, phone_number_id) from exc
            if not response.is_success:
                raise _send_error(response, phone_number_id)
            return _parse_send(response, phone_number_id)

        return self._retrying(attempt)

    # -- media --------------------------------------------------------------------------------

    def get_media(self, media_id: str, access_token: str) -> MediaInfo:
        """GET /{version}/{media_id}: the media's metadata and short-lived download URL."""
        data = self._get_json(f"/{self.version}/{media_id}", access_token)
        try:
            return MediaInfo(
                url=str(data["url"]),
                mime_type=str(data["mime_type"]),
                sha256=str(data["sha256"]),
                file_size=int(data["file_size"]),
                id=str(data.get("id", media_id)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad_answer(f"media {media_id}: {exc!r}") from exc

    def download(self, url: str, access_token: str, *, max_bytes: int | None = None) -> bytes:
        """The bytes at a media URL, streamed and refused past `max_bytes` (a permanent error)."""
        cap = self.max_media_bytes if max_bytes is None else max_bytes
        return self._retrying(lambda: self._download_once(url, access_token, cap))

    def _download_once(self, url: str, access_token: str, cap: int) -> bytes:
        try:
            with self._http.stream("GET", url, headers=_auth(access_token)) as response:
                if not response.is_success:
                    response.read()
                    raise error_from_response(response)
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > cap:
                    raise _too_large(cap)
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > cap:
                        raise _too_large(cap)
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise transport_failure(exc) from exc

    # -- templates ----------------------------------------------------------------------------

    def list_templates(
        self, waba_id: str, access_token: str, *, limit: int = 100, fields: str | None = None
    ) -> list[dict[str, Any]]:
        """Every template of a WhatsApp Business account, all pages followed."""
        return list(self.iter_templates(waba_id, access_token, limit=limit, fields=fields))

    def iter_templates(
        self, waba_id: str, access_token: str, *, limit: int = 100, fields: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Templates page by page. Cursors are replayed against our own base URL, so the token is
        never sent to whatever host a `paging.next` link names."""
        path = f"/{self.version}/{waba_id}/message_templates"
        params: dict[str, str | int] = {"limit": limit}
        if fields:
            params["fields"] = fields
        seen_cursors: set[str] = set()
        for _ in range(MAX_TEMPLATE_PAGES):
            page = self._get_json(path, access_token, params=params)
            data = page.get("data")
            if not isinstance(data, list):
                raise _bad_answer(f"templates of {waba_id}: no data list")
            yield from (item for item in data if isinstance(item, dict))
            after = _next_cursor(page)
            if after is None or after in seen_cursors:
                return
            seen_cursors.add(after)
            params = {**params, "after": after}
        raise _bad_answer(f"templates of {waba_id}: more than {MAX_TEMPLATE_PAGES} pages")

    # -- plumbing -----------------------------------------------------------------------------

    def _get_json(
        self, path: str, access_token: str, params: dict[str, str | int] | None = None
    ) -> dict[str, Any]:
        def attempt() -> dict[str, Any]:
            try:
                response = self._http.get(path, params=params, headers=_auth(access_token))
            except httpx.HTTPError as exc:
                raise transport_failure(exc) from exc
            if not response.is_success:
                raise error_from_response(response)
            try:
                data = response.json()
            except ValueError as exc:
                raise _bad_answer(f"{path}: body is not JSON") from exc
            if not isinstance(data, dict):
                raise _bad_answer(f"{path}: body is not an object")
            return data

        return self._retrying(attempt)


def _auth(access_token: str) -> dict[str, str]:
    if not access_token:
        raise InvalidPayload("an access token is required for Graph API calls")
    return {"Authorization": f"Bearer {access_token}"}


def _send_error(response: httpx.Response, phone_number_id: str) -> FleetError:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    return send_error_from_status(response.status_code, response.reason_phrase, body, phone_number_id)


def _parse_send(response: httpx.Response, phone_number_id: str) -> SendResult:
    # Meta answered 2xx, so it accepted the message; failing to read the wamid is ambiguous,
    # never a reason to send again.
    try:
        data = response.json()
        message = data["messages"][0]
        wamid = message["id"]
        contacts = data.get("contacts") or [{}]
        contact = contacts[0] if isinstance(contacts[0], dict) else {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise GraphAmbiguousOutcome(
            f"HTTP {response.status_code} without a readable wamid", phone_number_id
        ) from exc
    if not isinstance(wamid, str) or not wamid:
        raise GraphAmbiguousOutcome(f"HTTP {response.status_code} with an empty wamid", phone_number_id)
    status = message.get("message_status")
    wa_id = contact.get("wa_id")
    given = contact.get("input")
    return SendResult(
        wamid=wamid,
        wa_id=wa_id if isinstance(wa_id, str) else None,
        input=given if isinstance(given, str) else None,
        message_status=status if isinstance(status, str) else None,
    )


def _next_cursor(page: dict[str, Any]) -> str | None:
    paging = page.get("paging")
    if not isinstance(paging, dict) or not paging.get("next"):
        return None
    cursors = paging.get("cursors")
    after = cursors.get("after") if isinstance(cursors, dict) else None
    if isinstance(after, str) and after:
        return after
    # No cursor but a next link: take its `after` parameter rather than following the link.
    values = parse_qs(urlsplit(str(paging["next"])).query).get("after")
    return values[0] if values and values[0] else None


def _bad_answer(detail: str) -> GraphApiTransient:
    return GraphApiTransient(GraphErrorInfo(code=None, title=f"unexpected Graph API answer: {detail}"))


def _too_large(cap: int) -> GraphApiPermanent:
    info = GraphErrorInfo(code=None, title=f"media larger than {cap} bytes", http_status=413)
    return GraphApiPermanent(info)
