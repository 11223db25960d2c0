"""Foreign failures (httpx exceptions, Meta error bodies) turned into the domain's error classes.

The one question that matters for a send is whether the request can have reached Meta. Failures
before the request was handed to the network (no connection, no pool slot, a refused connect) are
plainly transient. Anything after that (a read timeout, a reset or a truncated answer) may mean Meta
accepted the message and we never heard: for a send that is `GraphAmbiguousOutcome`, for a read it
is merely transient.
"""

from __future__ import annotations

from typing import Any

import httpx

from domain.errors import (
    FleetError,
    GraphAmbiguousOutcome,
    GraphApiError,
    GraphApiTransient,
    GraphErrorInfo,
    graph_error,
)

# The request provably never reached the server.
NEVER_SENT: tuple[type[httpx.HTTPError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def info_from_body(body: Any, http_status: int | None) -> GraphErrorInfo | None:
    """Meta's `{"error": {...}}` object as a GraphErrorInfo, or None when the body is not one."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if not isinstance(error, dict):
        return None
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, dict) else None
    return GraphErrorInfo(
        code=_int_or_none(error.get("code")),
        title=_str_or_none(error.get("message")) or _str_or_none(error.get("error_user_title")) or "",
        http_status=http_status,
        details=_str_or_none(details) or _str_or_none(error.get("error_user_msg")),
        subcode=_int_or_none(error.get("error_subcode")),
        error_type=_str_or_none(error.get("type")),
        fbtrace_id=_str_or_none(error.get("fbtrace_id")),
    )


def error_from_response(response: httpx.Response) -> GraphApiError:
    """The domain error for a non-2xx answer whose body has been read."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    info = info_from_body(body, response.status_code)
    if info is None:
        # A proxy or load balancer answered (HTML 502 and the like): the status is all there is.
        info = GraphErrorInfo(
            code=None,
            title=f"HTTP {response.status_code} {response.reason_phrase}".strip(),
            http_status=response.status_code,
        )
    return graph_error(info)


# Gateways: the request may have been handed to Meta before the proxy gave up on it.
GATEWAY_STATUSES = frozenset({502, 504})


def send_error_from_status(status: int, reason: str, body: Any, phone_number_id: str) -> FleetError:
    """The domain error for a non-2xx answer to a send.

    Only Meta's own error body proves Meta decided (and, for a transient code, sent nothing). A
    502/504, or a 5xx without that body, is a proxy talking: the request may have reached Meta,
    so the outcome is ambiguous and the message is never sent again blindly.
    """
    info = info_from_body(body, status)
    if status in GATEWAY_STATUSES or (status >= 500 and info is None):
        return GraphAmbiguousOutcome(f"HTTP {status} {reason}".strip(), phone_number_id)
    if info is None:
        info = GraphErrorInfo(code=None, title=f"HTTP {status} {reason}".strip(), http_status=status)
    return graph_error(info)


def transport_failure(exc: httpx.HTTPError) -> GraphApiTransient:
    return GraphApiTransient(GraphErrorInfo(code=None, title=f"{type(exc).__name__}: {exc}".rstrip(": ")))


def send_failure(exc: httpx.HTTPError, phone_number_id: str) -> FleetError:
    """A transport failure during a send: transient if it never left, ambiguous otherwise."""
    if isinstance(exc, NEVER_SENT):
        return transport_failure(exc)
    return GraphAmbiguousOutcome(f"{type(exc).__name__}: {exc}".rstrip(": "), phone_number_id)
