"""What the send handler needs from the world, as ports: the Graph API, the fleet-wide breakers
and pacing, number routing, and the message rows. Production adapters are in
`workers.outbound.adapters` and `workers.outbound.store`; tests give in-memory ones."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from db.tenants import NumberRoute
from domain.ports import Job
from workers.graph.models import SendResult


class GraphSender(Protocol):
    async def send(self, phone_number_id: str, access_token: str, payload: Mapping[str, Any]) -> SendResult:
        """Raises GraphApiTransient, GraphApiPermanent or GraphAmbiguousOutcome."""
        ...


class BreakerTicket(Protocol):
    """Leave for one call from both breakers (the API's and the number's)."""

    async def settle(self, failure: BaseException | None) -> None:
        """The call was made: record its outcome (None: it succeeded) on both breakers."""
        ...

    async def release(self) -> None:
        """No call was made after all: nothing to record, any probe lock given back."""
        ...


class Breakers(Protocol):
    async def admit(self, phone_number_id: str) -> BreakerTicket:
        """Raises CircuitOpen (with the seconds to wait) when either breaker refuses."""
        ...


class SendPacer(Protocol):
    async def take(self, phone_number_id: str, mps: float, recipient: str, max_wait: float) -> None:
        """Return once a send token for the number and the recipient pair is taken; raise
        PacingDeferred when that would take longer than `max_wait` seconds."""
        ...


class Routes(Protocol):
    def number(self, phone_number_id: str) -> NumberRoute | None: ...


@dataclass(frozen=True, slots=True)
class Claim:
    """The attempt, committed as `sending`: the call may go out."""

    attempt: int
    payload: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Decided:
    """The claim decided without a call: `outcome` (a SendOutcome value), or a deferral."""

    outcome: str
    defer_seconds: float = 0.0
    reason: str = ""


class SendStore(Protocol):
    """The message rows. Each method is one transaction, committed before it returns."""

    async def claim(self, organization_id: UUID, message_id: UUID) -> Claim | Decided: ...

    async def record_sent(
        self, organization_id: UUID, message_id: UUID, attempt: int, wamid: str
    ) -> datetime | None:
        """The message's creation time; None if the attempt was no longer current."""
        ...

    async def record_failed(
        self,
        organization_id: UUID,
        message_id: UUID,
        attempt: int | None,
        *,
        code: int | None,
        title: str,
        details: str | None,
    ) -> bool: ...

    async def record_ambiguous(
        self, organization_id: UUID, message_id: UUID, attempt: int, detail: str
    ) -> bool: ...

    async def release(
        self, organization_id: UUID, message_id: UUID, attempt: int, *, code: int | None, title: str,
        details: str | None,
    ) -> bool: ...  # fmt: skip

    async def defer(self, organization_id: UUID, message_id: UUID, job: Job) -> None:
        """Touch the queued row and publish its delayed job."""
        ...
