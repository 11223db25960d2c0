"""In-memory fakes of the send handler's ports (`workers.outbound.ports`)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from db.tenants import NumberRoute
from domain.errors import CircuitOpen, PacingDeferred
from domain.ports import Job
from workers.graph.models import SendResult
from workers.outbound.handler import SendPorts
from workers.outbound.ports import Claim, Decided


@dataclass
class Row:
    status: str = "queued"
    attempts: int = 0
    wamid: str | None = None
    error_code: int | None = None
    touched: int = 0


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[UUID, Row] = {}
        self.deferred: list[Job] = []

    def add(self) -> UUID:
        message_id = uuid4()
        self.rows[message_id] = Row()
        return message_id

    async def claim(self, organization_id: UUID, message_id: UUID) -> Claim | Decided:
        row = self.rows.get(message_id)
        if row is None:
            return Decided("skipped")
        if row.status != "queued" or row.wamid is not None:
            return Decided("deferred", 61.0, "in_flight") if row.status == "sending" else Decided("skipped")
        row.status, row.attempts = "sending", row.attempts + 1
        return Claim(row.attempts, {"to": "1555", "type": "text"}, datetime.now(UTC))

    def _current(self, message_id: UUID, attempt: int | None) -> Row | None:
        row = self.rows[message_id]
        if row.wamid is not None:
            return None
        if attempt is None:
            return row if row.status == "queued" else None
        return row if row.attempts == attempt and row.status in ("sending", "ambiguous") else None

    async def record_sent(
        self, organization_id: UUID, message_id: UUID, attempt: int, wamid: str
    ) -> datetime | None:
        row = self._current(message_id, attempt)
        if row is None:
            return None
        row.status, row.wamid = "sent", wamid
        return datetime.now(UTC)

    async def record_failed(
        self, organization_id: UUID, message_id: UUID, attempt: int | None, *, code: int | None, title: str,
        details: str | None,
    ) -> bool:  # fmt: skip
        row = self._current(message_id, attempt)
        if row is not None:
            row.status, row.error_code = "failed", code
        return row is not None

    async def record_ambiguous(
        self, organization_id: UUID, message_id: UUID, attempt: int, detail: str
    ) -> bool:
        row = self._current(message_id, attempt)
        if row is not None:
            row.status = "ambiguous"
        return row is not None

    async def release(
        self, organization_id: UUID, message_id: UUID, attempt: int, *, code: int | None, title: str,
        details: str | None,
    ) -> bool:  # fmt: skip
        row = self._current(message_id, attempt)
        if row is not None:
            row.status, row.error_code = "queued", code
        return row is not None

    async def defer(self, organization_id: UUID, message_id: UUID, job: Job) -> None:
        self.rows[message_id].touched += 1
        self.deferred.append(job)


class ScriptedGraph:
    """Answers sends from a script (a SendResult or an exception per call), after `delay` s,
    and notes the message row's status as the call went out."""

    def __init__(self, store: MemoryStore, *answers: SendResult | BaseException, delay: float = 0.0) -> None:
        self.store = store
        self.answers = list(answers)
        self.delay = delay
        self.calls: list[Mapping[str, Any]] = []
        self.statuses_at_call: list[str] = []

    async def send(self, phone_number_id: str, access_token: str, payload: Mapping[str, Any]) -> SendResult:
        self.calls.append(payload)
        self.statuses_at_call.extend(row.status for row in self.store.rows.values())
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


@dataclass
class Ticket:
    log: list[str]

    async def settle(self, failure: BaseException | None) -> None:
        self.log.append("success" if failure is None else type(failure).__name__)

    async def release(self) -> None:
        self.log.append("released")


@dataclass
class SwitchBreakers:
    open_for: float | None = None
    log: list[str] = field(default_factory=list)

    async def admit(self, phone_number_id: str) -> Ticket:
        if self.open_for is not None:
            raise CircuitOpen(f"number:{phone_number_id}", self.open_for)
        return Ticket(self.log)


@dataclass
class CountingPacer:
    defer_after: int | None = None
    taken: int = 0

    async def take(self, phone_number_id: str, mps: float, recipient: str, max_wait: float) -> None:
        if self.defer_after is not None and self.taken >= self.defer_after:
            raise PacingDeferred(7.5, "pair rate")
        self.taken += 1


class StaticRoutes:
    def __init__(self, organization_id: UUID, number: str = "pn-1") -> None:
        self.routes = {number: NumberRoute(organization_id, uuid4(), "token", 1000)}

    def number(self, phone_number_id: str) -> NumberRoute | None:
        return self.routes.get(phone_number_id)


def ports(store: MemoryStore, graph: ScriptedGraph, organization_id: UUID, **overrides: Any) -> SendPorts:
    fields: dict[str, Any] = {
        "graph": graph,
        "breakers": SwitchBreakers(),
        "pacer": CountingPacer(),
        "routes": StaticRoutes(organization_id),
        "store": store,
        **overrides,
    }
    return SendPorts(**fields)
