"""Sending one queued message through the Graph API, at most once.

The steps, each its own transaction so that what happened is on record before the next step:

1. Pace: take a send token for the number (and the recipient pair), fleet-wide, or re-enqueue
   the job with the bucket's delay. Nothing is claimed; the row is touched so the orphan sweep
   knows its job is alive.
2. Claim, inside the fleet-wide breakers: billing is asked (a refusal fails the message with the
   billing code); `sending` with attempt n is committed (a message that is not `queued` is decided
   by `domain.outbound`), counted against the plan on its first attempt; then the call. An open
   breaker re-enqueues the job with the breaker's delay before anything is claimed.
3. Settle that attempt (every update names attempt n):
   - a wamid: `sent`, and the statuses that arrived before it are applied;
   - permanent error: `failed` with Meta's code and title, never retried;
   - transient error (nothing was sent): back to `queued` with the error kept, and raised so
     Dramatiq retries with backoff; on the last attempt `failed` instead, and dead-lettered;
   - ambiguous (the request may have reached Meta): `ambiguous`, never sent again.

The handler is a coroutine over ports (`workers.outbound.ports`), so one process keeps hundreds
of sends in flight on one event loop (`workers.outbound.engine`); `send_message` runs it for one
command from blocking code.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import NoReturn
from uuid import UUID

from sqlalchemy.engine import Engine

from domain.errors import (
    CircuitOpen,
    FleetError,
    GraphAmbiguousOutcome,
    GraphApiPermanent,
    GraphApiTransient,
    PacingDeferred,
)
from domain.outbound import send_job
from domain.ports import Job, JobPublisher
from services import deferrals
from services.fleet_counters import Counts
from workers.graph import BreakerRegistry, Pacer
from workers.graph.models import SendResult
from workers.outbound import metrics
from workers.outbound.adapters import BlockingSender, FleetBreakers, FleetPacer, ThreadedSender
from workers.outbound.billing_gate import BillingGate
from workers.outbound.limits import InFlightLimits
from workers.outbound.ports import Breakers, Claim, Decided, GraphSender, Routes, SendPacer, SendStore
from workers.outbound.store import CatchUp, PostgresSendStore

log = logging.getLogger(__name__)


class SendOutcome(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    RETRYING = "retried"
    EXHAUSTED = "exhausted"
    AMBIGUOUS = "ambiguous"
    REFUSED = "refused"
    DEFERRED = "deferred"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class SendCommand:
    organization_id: UUID
    message_id: UUID
    phone_number_id: str
    to: str
    final_attempt: bool = False

    def job(self, delay_ms: int | None = None) -> Job:
        return send_job(self.organization_id, self.message_id, self.phone_number_id, self.to, delay_ms)


@dataclass(frozen=True, slots=True)
class SendPorts:
    graph: GraphSender
    breakers: Breakers
    pacer: SendPacer
    routes: Routes
    store: SendStore
    limits: InFlightLimits = field(default_factory=InFlightLimits)
    pace_max_wait: float = 2.0
    # The fleet-wide deferral counts per number (written in batches, off this path).
    counters: Counts | None = None


async def send_one(cmd: SendCommand, ports: SendPorts) -> SendOutcome:
    outcome = await _send(cmd, ports)
    metrics.SENDS.labels(outcome.value).inc()
    return outcome


async def _send(cmd: SendCommand, ports: SendPorts) -> SendOutcome:
    route = ports.routes.number(cmd.phone_number_id)
    # The token comes through the route lookup, which owns how tokens are kept.
    if route is None or route.organization_id != cmd.organization_id or not route.access_token:
        detail = "not connected to this organization" if route is None or not route.access_token else ""
        title = f"phone number {cmd.phone_number_id} is {detail or 'not usable'}"
        await ports.store.record_failed(
            cmd.organization_id, cmd.message_id, None, code=None, title=title, details=None
        )
        return SendOutcome.FAILED
    try:
        await ports.pacer.take(cmd.phone_number_id, route.mps, cmd.to, ports.pace_max_wait)
    except PacingDeferred as exc:
        return await _defer(cmd, ports, exc.retry_after_seconds, exc.reason.replace(" ", "_"))
    async with ports.limits.slot(cmd.phone_number_id):
        return await _claim_and_call(cmd, ports, route.access_token)


async def _claim_and_call(cmd: SendCommand, ports: SendPorts, token: str) -> SendOutcome:
    try:
        ticket = await ports.breakers.admit(cmd.phone_number_id)
    except CircuitOpen as exc:
        return await _defer(cmd, ports, exc.retry_after_seconds, "circuit_open")
    try:
        claim = await ports.store.claim(cmd.organization_id, cmd.message_id)
    except BaseException:
        await ticket.release()
        raise
    if isinstance(claim, Decided):
        await ticket.release()
        return await _decided(cmd, ports, claim)
    started = time.perf_counter()
    try:
        result = await ports.graph.send(cmd.phone_number_id, token, claim.payload)
    except BaseException as exc:
        metrics.CALL_SECONDS.observe(time.perf_counter() - started)
        await ticket.settle(exc)
        if isinstance(exc, FleetError):
            return await _failed(cmd, ports, claim, exc)
        raise
    metrics.CALL_SECONDS.observe(time.perf_counter() - started)
    await ticket.settle(None)
    await _record_sent(cmd, ports, claim, result)
    return SendOutcome.SENT


async def _decided(cmd: SendCommand, ports: SendPorts, decided: Decided) -> SendOutcome:
    outcome = SendOutcome(decided.outcome)
    if outcome is SendOutcome.DEFERRED:
        return await _defer(cmd, ports, decided.defer_seconds, decided.reason)
    return outcome


async def _failed(cmd: SendCommand, ports: SendPorts, claim: Claim, exc: FleetError) -> SendOutcome:
    org, message_id, attempt = cmd.organization_id, cmd.message_id, claim.attempt
    if isinstance(exc, GraphAmbiguousOutcome):
        await ports.store.record_ambiguous(org, message_id, attempt, exc.detail)
        log.warning("send outcome unknown; recorded as ambiguous", extra=_extra(cmd, attempt))
        return SendOutcome.AMBIGUOUS
    if isinstance(exc, GraphApiPermanent):
        info = exc.info
        await ports.store.record_failed(
            org, message_id, attempt, code=info.code, title=info.title, details=info.details
        )
        metrics.PERMANENT_ERRORS.labels(str(info.code or info.http_status or "none")).inc()
        return SendOutcome.FAILED
    if isinstance(exc, GraphApiTransient):
        await _transient(cmd, ports, attempt, exc)
    # Not an answer from Meta (a bad payload of ours): the job fails; the attempt stays `sending`
    # until the lease sweep judges it, as after a crash.
    raise exc


async def _record_sent(cmd: SendCommand, ports: SendPorts, claim: Claim, result: SendResult) -> None:
    created = await ports.store.record_sent(cmd.organization_id, cmd.message_id, claim.attempt, result.wamid)
    if created is None:
        log.error(
            "sent, but the attempt was no longer current",
            extra={**_extra(cmd, claim.attempt), "wamid": result.wamid},
        )
        return
    metrics.QUEUE_TO_SENT_SECONDS.observe(max(0.0, (datetime.now(UTC) - created).total_seconds()))


async def _transient(cmd: SendCommand, ports: SendPorts, attempt: int, exc: GraphApiTransient) -> NoReturn:
    info = exc.info
    if cmd.final_attempt:
        details = f"retries exhausted; last error: {info.details or info.title}"
        await ports.store.record_failed(
            cmd.organization_id, cmd.message_id, attempt, code=info.code, title=info.title, details=details
        )
        metrics.SENDS.labels(SendOutcome.EXHAUSTED.value).inc()
    else:
        await ports.store.release(
            cmd.organization_id, cmd.message_id, attempt, code=info.code, title=info.title,
            details=info.details,
        )  # fmt: skip
        metrics.SENDS.labels(SendOutcome.RETRYING.value).inc()
    raise exc


async def _defer(cmd: SendCommand, ports: SendPorts, seconds: float, reason: str) -> SendOutcome:
    metrics.DEFERRALS.labels(reason).inc()
    if ports.counters is not None:
        deferrals.count_deferral(ports.counters, cmd.phone_number_id, reason)
    await ports.store.defer(
        cmd.organization_id, cmd.message_id, cmd.job(delay_ms=max(50, int(seconds * 1000)))
    )
    return SendOutcome.DEFERRED


def _extra(cmd: SendCommand, attempt: int) -> dict[str, object]:
    return {"message_id": str(cmd.message_id), "phone_number_id": cmd.phone_number_id, "attempt": attempt}


# -- one send from blocking code ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendDeps:
    """The real adapters, for running one send from blocking code (`send_message`)."""

    engine: Engine
    graph: BlockingSender
    breakers: BreakerRegistry
    pacer: Pacer
    routes: Routes
    jobs: JobPublisher
    catch_up: CatchUp
    lease_seconds: float = 120.0
    pace_max_wait: float = 2.0
    billing: BillingGate = field(default_factory=BillingGate)
    counters: Counts | None = None

    def ports(self) -> SendPorts:
        """Ports for one event loop (their batching lives on it)."""
        return SendPorts(
            graph=ThreadedSender(self.graph),
            breakers=FleetBreakers(self.breakers),
            pacer=FleetPacer(self.pacer),
            routes=self.routes,
            store=PostgresSendStore(
                self.engine, self.jobs, self.catch_up, lease_seconds=self.lease_seconds, billing=self.billing
            ),
            pace_max_wait=self.pace_max_wait,
            counters=self.counters,
        )


def send_message(cmd: SendCommand, deps: SendDeps) -> SendOutcome:
    """Send one message on an event loop of its own (tools and tests; workers use the engine)."""

    async def run() -> SendOutcome:
        return await send_one(cmd, deps.ports())

    return asyncio.run(run())


__all__ = ["SendCommand", "SendDeps", "SendOutcome", "SendPorts", "send_message", "send_one"]
