"""The error taxonomy: one root, small classes that carry their data.

Foreign exceptions (httpx, psycopg, pika) are translated into these at the adapter boundary, so
handlers and actors decide on retries by class alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FleetError(Exception):
    """Root of every error this service raises on purpose."""


class TransientError(FleetError):
    """Worth retrying later: the same input may succeed."""


class PermanentError(FleetError):
    """Retrying cannot help: record it and move on (or dead-letter it)."""


class InvalidPayload(PermanentError):
    """Input that does not have the expected shape."""


class UnknownTenant(PermanentError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"no organization owns {key!r}")


class ErrorKind(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    AUTH = "auth"  # configuration must be fixed; retrying just hammers the API


# Meta error codes, from the Cloud API error-code reference.
THROTTLING_CODES = frozenset({4, 80007, 130429, 131048, 131056, 133016})
AUTH_CODES = frozenset({190, 10, 200})
TRANSIENT_CODES = THROTTLING_CODES | frozenset({1, 2, 131000, 131016})


@dataclass(frozen=True, slots=True)
class GraphErrorInfo:
    code: int | None
    title: str
    http_status: int | None = None
    details: str | None = None
    subcode: int | None = None
    error_type: str | None = None
    fbtrace_id: str | None = None  # what Meta support asks for when a failure needs explaining


def classify_graph_error(http_status: int | None, code: int | None) -> ErrorKind:
    """Transient vs permanent for a Graph API failure.

    Throttling codes and server-side trouble are retried; auth problems are their own kind; every
    other Meta code (131026 undeliverable, 131047 outside the window, 132xxx template errors,
    131050 opted out, 368 policy block, ...) is permanent for that message.
    """
    if code is not None:
        if code in TRANSIENT_CODES:
            return ErrorKind.TRANSIENT
        if code in AUTH_CODES:
            return ErrorKind.AUTH
        return ErrorKind.PERMANENT
    if http_status is None or http_status == 429 or http_status >= 500:
        return ErrorKind.TRANSIENT
    if http_status in (401, 403):
        return ErrorKind.AUTH
    return ErrorKind.PERMANENT


class GraphApiError(FleetError):
    """A failed Graph API call, with Meta's code and title."""

    def __init__(self, info: GraphErrorInfo) -> None:
        self.info = info
        self.kind = classify_graph_error(info.http_status, info.code)
        super().__init__(f"Graph API error {info.code} ({info.http_status}): {info.title}")


class GraphApiTransient(GraphApiError, TransientError):
    pass


class GraphApiPermanent(GraphApiError, PermanentError):
    pass


def graph_error(info: GraphErrorInfo) -> GraphApiError:
    """The right subclass for a Graph API failure, so `except TransientError` does the right thing."""
    if classify_graph_error(info.http_status, info.code) is ErrorKind.TRANSIENT:
        return GraphApiTransient(info)
    return GraphApiPermanent(info)


class GraphAmbiguousOutcome(FleetError):
    """A send whose request may have reached Meta but whose answer never arrived.

    Neither transient nor permanent on purpose: Meta may already have delivered the message, so
    sending again risks a duplicate. Record it and reconcile (a status webhook carrying the wamid,
    or an operator) instead of retrying.
    """

    def __init__(self, detail: str, phone_number_id: str | None = None) -> None:
        self.detail = detail
        self.phone_number_id = phone_number_id
        super().__init__(f"outcome unknown for a send from {phone_number_id or '?'}: {detail}")


class CircuitOpen(FleetError):
    """Calls are not being attempted because a circuit breaker is open.

    Not a failure of the work itself: defer it by `retry_after_seconds` rather than counting an
    attempt or dead-lettering it.
    """

    def __init__(self, scope: str, retry_after_seconds: float) -> None:
        self.scope = scope
        self.retry_after_seconds = retry_after_seconds
        super().__init__(f"circuit {scope!r} is open; retry in {retry_after_seconds:.1f}s")


class PacingDeferred(FleetError):
    """No send token within the time a worker may wait for one: re-enqueue with this delay."""

    def __init__(self, retry_after_seconds: float, reason: str = "throughput") -> None:
        self.retry_after_seconds = retry_after_seconds
        self.reason = reason
        super().__init__(f"paced ({reason}); retry in {retry_after_seconds:.2f}s")
