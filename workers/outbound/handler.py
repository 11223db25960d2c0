"""Sending one queued message through the Graph API, at most once.

The steps, each its own transaction so that what happened is on record before the next step:

1. Pace: take a send token for the number (and the recipient pair) in Redis, or re-enqueue the
   job with the bucket's delay. Nothing is recorded; the message stays `queued`.
2. Claim and call, inside the fleet-wide breakers: ask billing (a refusal fails the message with
   the billing code); mark `sending` with attempt n (a message that is not `queued` is decided by
   `domain.outbound`), count it against the plan on its first attempt, COMMIT; then call. An
   open breaker re-enqueues the job with the breaker's delay before anything is claimed.
3. Settle that attempt (every update names attempt n):
   - a wamid: `sent`, and the statuses that arrived before it are applied;
   - permanent error: `failed` with Meta's code and title, never retried;
   - transient error (nothing was sent): back to `queued` with the error kept, and raised so
     Dramatiq retries with backoff; on the last attempt `failed` instead, and dead-lettered;
   - ambiguous (the request may have reached Meta): `ambiguous`, never sent again.

Deferrals publish a fresh delayed job and return, so they neither fail the message, nor reach the
dead letters, nor spend its retry budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NoReturn, Protocol
from uuid import UUID

import psycopg
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from db.repos import outbound as repo
from db.tenants import NumberRoute
from db.uow import BatchedWork, UnitOfWork
from domain.errors import (
    CircuitOpen,
    GraphAmbiguousOutcome,
    GraphApiPermanent,
    GraphApiTransient,
    PacingDeferred,
)
from domain.outbound import ClaimVerdict, decide_claim, send_job
from domain.ports import Job, JobPublisher
from workers.graph import BreakerRegistry, GraphClient, Pacer, SendResult
from workers.inbound import statuses
from workers.outbound import metrics
from workers.outbound.billing_gate import BillingGate

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


class NumberRoutes(Protocol):
    def number(self, phone_number_id: str) -> NumberRoute | None: ...


@dataclass(frozen=True, slots=True)
class SendDeps:
    engine: Engine
    graph: GraphClient
    breakers: BreakerRegistry
    pacer: Pacer
    routes: NumberRoutes
    jobs: JobPublisher
    lease_seconds: float = 120.0
    pace_max_wait: float = 2.0
    billing: BillingGate = field(default_factory=BillingGate)


class _Settled(Exception):
    """The claim decided without a call. Not a FleetError, so the breakers do not count it."""

    def __init__(self, outcome: SendOutcome, defer_seconds: float = 0.0, reason: str = "") -> None:
        self.outcome = outcome
        self.defer_seconds = defer_seconds
        self.reason = reason


@dataclass(slots=True)
class _Attempt:
    number: int = 0
    created_at: datetime | None = None


def send_message(cmd: SendCommand, deps: SendDeps) -> SendOutcome:
    outcome = _send(cmd, deps)
    metrics.SENDS.labels(outcome.value).inc()
    return outcome


def _send(cmd: SendCommand, deps: SendDeps) -> SendOutcome:
    route = deps.routes.number(cmd.phone_number_id)
    if route is None or route.organization_id != cmd.organization_id or not route.access_token:
        detail = "not connected to this organization" if route is None or not route.access_token else ""
        _settle_queued(cmd, deps, f"phone number {cmd.phone_number_id} is {detail or 'not usable'}")
        return SendOutcome.FAILED
    try:
        deps.pacer.wait_for_token(cmd.phone_number_id, route.mps, cmd.to, max_wait=deps.pace_max_wait)
    except PacingDeferred as exc:
        return _defer(cmd, deps, exc.retry_after_seconds, exc.reason.replace(" ", "_"))
    attempt = _Attempt()
    token = route.access_token
    try:
        result = deps.breakers.call(cmd.phone_number_id, lambda: _claim_and_call(cmd, deps, token, attempt))
    except CircuitOpen as exc:
        return _defer(cmd, deps, exc.retry_after_seconds, "circuit_open")
    except _Settled as settled:
        if settled.outcome is SendOutcome.DEFERRED:
            return _defer(cmd, deps, settled.defer_seconds, settled.reason)
        return settled.outcome
    except GraphAmbiguousOutcome as ambiguous:
        detail = ambiguous.detail
        _settle(deps, cmd, lambda c: repo.record_ambiguous(c, cmd.message_id, attempt.number, detail))
        log.warning("send outcome unknown; recorded as ambiguous", extra=_extra(cmd, attempt))
        return SendOutcome.AMBIGUOUS
    except GraphApiPermanent as exc:
        info = exc.info
        _settle(
            deps,
            cmd,
            lambda c: repo.record_failed(
                c, cmd.message_id, attempt.number, code=info.code, title=info.title, details=info.details
            ),
        )
        metrics.PERMANENT_ERRORS.labels(str(info.code or info.http_status or "none")).inc()
        return SendOutcome.FAILED
    except GraphApiTransient as exc:
        _transient(cmd, deps, attempt, exc)
    _record_sent(cmd, deps, attempt, result)
    return SendOutcome.SENT


def _claim_and_call(cmd: SendCommand, deps: SendDeps, token: str, attempt: _Attempt) -> SendResult:
    claimed = _claim(cmd, deps)
    attempt.number = claimed.attempt
    attempt.created_at = claimed.created_at
    started = time.perf_counter()
    try:
        return deps.graph.send_message(cmd.phone_number_id, token, dict(claimed.payload))
    finally:
        metrics.CALL_SECONDS.observe(time.perf_counter() - started)


def _claim(cmd: SendCommand, deps: SendDeps) -> repo.Claimed:
    """The attempt, committed. While billing's "yes" is fresh and the message is `queued` (nearly
    every send) that is one statement, committed in the same round trip."""
    if deps.billing.allowed_recently(cmd.organization_id):
        claimed = repo.claim_queued_committed(deps.engine, cmd.organization_id, cmd.message_id)
        if claimed is not None:
            return claimed
    with UnitOfWork(deps.engine, organization_id=cmd.organization_id) as uow:
        decision = deps.billing.check(uow.conn, cmd.organization_id)
        if not decision.allowed:
            title = decision.message or "refused by billing"
            if repo.record_failed(
                uow.conn, cmd.message_id, None, code=None, title=title, details=str(decision.code)
            ):
                uow.commit()
                raise _Settled(SendOutcome.REFUSED)
        claimed = repo.claim_queued(uow.conn, cmd.message_id) if decision.allowed else None
        if claimed is None:
            _settle_unclaimed(uow, cmd, deps)
        uow.commit()
    return claimed


def _settle_unclaimed(uow: UnitOfWork, cmd: SendCommand, deps: SendDeps) -> NoReturn:
    """The message was not `queued`: decide what this job means for it (see `domain.outbound`)."""
    row = repo.lock_for_claim(uow.conn, cmd.message_id, deps.lease_seconds)
    if row is None:
        raise _Settled(SendOutcome.SKIPPED)
    verdict = decide_claim(row.status, row.wamid, row.lease_expired)
    if verdict is ClaimVerdict.WAIT:
        raise _Settled(SendOutcome.DEFERRED, row.lease_left_seconds + 1.0, "in_flight")
    if verdict is ClaimVerdict.AMBIGUOUS:
        repo.record_ambiguous(uow.conn, cmd.message_id, row.attempts, "the previous attempt never finished")
        uow.commit()
        raise _Settled(SendOutcome.AMBIGUOUS)
    if verdict is ClaimVerdict.SEND:  # queued again since the claim looked: let a fresh job take it
        raise _Settled(SendOutcome.DEFERRED, 0.1, "in_flight")
    raise _Settled(SendOutcome.SKIPPED)


def _record_sent(cmd: SendCommand, deps: SendDeps, attempt: _Attempt, result: SendResult) -> None:
    """The wamid, and what arrived for it before it was known, in one transaction of two round
    trips: BEGIN, scope, update and the catch-up on parked statuses; COMMIT."""

    def once() -> datetime | None:
        with BatchedWork(deps.engine, cmd.organization_id) as work:
            recorded = repo.record_sent(
                work, cmd.message_id, attempt.number, result.wamid, then=statuses.CATCH_UP
            )
            if recorded.created_at is None:
                return None
            if recorded.after:
                statuses.apply_caught_up(work.conn, recorded.after)
            work.commit()
            return recorded.created_at

    created = _settle_retrying(once)
    if created is None:
        log.error(
            "sent, but the attempt was no longer current",
            extra={**_extra(cmd, attempt), "wamid": result.wamid},
        )
        return
    metrics.QUEUE_TO_SENT_SECONDS.observe(max(0.0, (datetime.now(UTC) - created).total_seconds()))


def _transient(cmd: SendCommand, deps: SendDeps, attempt: _Attempt, exc: GraphApiTransient) -> NoReturn:
    info = exc.info
    if cmd.final_attempt:
        details = f"retries exhausted; last error: {info.details or info.title}"
        _settle(
            deps,
            cmd,
            lambda c: repo.record_failed(
                c, cmd.message_id, attempt.number, code=info.code, title=info.title, details=details
            ),
        )
        metrics.SENDS.labels(SendOutcome.EXHAUSTED.value).inc()
    else:
        _settle(
            deps,
            cmd,
            lambda c: repo.release_attempt(
                c, cmd.message_id, attempt.number, code=info.code, title=info.title, details=info.details
            ),
        )
        metrics.SENDS.labels(SendOutcome.RETRYING.value).inc()
    raise exc


def _defer(cmd: SendCommand, deps: SendDeps, seconds: float, reason: str) -> SendOutcome:
    metrics.DEFERRALS.labels(reason).inc()
    deps.jobs.publish(cmd.job(delay_ms=max(50, int(seconds * 1000))))
    return SendOutcome.DEFERRED


def _settle_queued(cmd: SendCommand, deps: SendDeps, title: str) -> None:
    _settle(
        deps, cmd, lambda c: repo.record_failed(c, cmd.message_id, None, code=None, title=title, details=None)
    )


_settle_retrying = Retrying(
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.2, max=2.0),
    retry=retry_if_exception_type((OperationalError, psycopg.OperationalError)),
    reraise=True,
)


def _settle(deps: SendDeps, cmd: SendCommand, write: Callable[[Connection], Any]) -> None:
    """Record an outcome, retrying briefly through a database blip: losing a wamid we were given
    would leave the message to be judged ambiguous."""

    def once() -> None:
        with UnitOfWork(deps.engine, organization_id=cmd.organization_id) as uow:
            write(uow.conn)
            uow.commit()

    _settle_retrying(once)


def _extra(cmd: SendCommand, attempt: _Attempt) -> dict[str, object]:
    return {
        "message_id": str(cmd.message_id),
        "phone_number_id": cmd.phone_number_id,
        "attempt": attempt.number,
    }
