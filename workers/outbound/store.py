"""The message rows of the send path in Postgres (`SendStore`), claims and wamids batched.

The claims of one organization's sends asking at the same moment share one transaction (one
UPDATE under its tenant scope), and so do the wamids recorded at the same moment; the batches of
different organizations run side by side (`KeyedCoalescer`), each in a transaction and on a
pooled connection of its own, a few at once (`batch_concurrency`), with custom plans (the
batched UPDATEs' generic plans were an order of magnitude slower per row). The rare outcomes (failed,
ambiguous, released, deferred) are a transaction each. Every transaction commits in exactly one
place, at the end of its `with UnitOfWork` block, before its callers hear anything. Each outcome
(sent, failed, ambiguous, released) is appended to the audit trail in the transaction that
records it, a batch's in one multi-row insert.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar
from uuid import UUID

import psycopg
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from db.repos import audit
from db.repos import outbound as repo
from db.uow import UnitOfWork
from domain.outbound import ClaimVerdict, decide_claim
from domain.ports import Job, JobPublisher
from workers.outbound.billing_gate import BillingGate
from workers.outbound.coalesce import KeyedCoalescer
from workers.outbound.ports import Claim, Decided

log = logging.getLogger(__name__)
T = TypeVar("T")
# What the status path applies for a wamid once its message is known (`apply_pending_statuses`).
CatchUp = Callable[[Connection, str], object]

# A database blip while recording an outcome is retried briefly: losing a wamid we were given
# would leave the message to be judged ambiguous.
_retrying = Retrying(
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.2, max=2.0),
    retry=retry_if_exception_type((OperationalError, psycopg.OperationalError)),
    reraise=True,
)


class PostgresSendStore:
    def __init__(
        self,
        engine: Engine,
        jobs: JobPublisher,
        catch_up: CatchUp,
        *,
        lease_seconds: float = 120.0,
        billing: BillingGate | None = None,
        batch_concurrency: int = 4,
    ) -> None:
        self._engine = engine
        self._jobs = jobs
        self._catch_up = catch_up
        self._lease = lease_seconds
        self._billing = billing or BillingGate()
        # The claims (and the wamids) of one organization asking at the same moment share one
        # transaction; the organizations' batches run side by side, each its own transaction.
        self._claims: KeyedCoalescer[UUID, UUID, Claim | Decided] = KeyedCoalescer(
            self._claim_batch, concurrency=batch_concurrency
        )
        self._sent: KeyedCoalescer[UUID, repo.SentRecord, datetime | None] = KeyedCoalescer(
            self._sent_batch, concurrency=batch_concurrency
        )

    # -- claims ---------------------------------------------------------------------------------

    async def claim(self, organization_id: UUID, message_id: UUID) -> Claim | Decided:
        return await self._claims.submit(organization_id, message_id)

    def _claim_batch(self, org: UUID, ids: Sequence[UUID]) -> list[Claim | Decided | BaseException]:
        answers = _retrying(self._claim_org, org, list(dict.fromkeys(ids)))
        out: list[Claim | Decided | BaseException] = []
        seen: set[UUID] = set()
        # A duplicate job in the same batch finds its message claimed by the first, in flight.
        in_flight = Decided("deferred", self._lease + 1.0, "in_flight")
        for message_id in ids:
            out.append(in_flight if message_id in seen else answers[message_id])
            seen.add(message_id)
        return out

    def _claim_org(self, org: UUID, ids: list[UUID]) -> dict[UUID, Claim | Decided]:
        """One transaction; a deadlock victim or a dropped connection is rolled back whole, so it
        is tried again whole."""
        with UnitOfWork(self._engine, organization_id=org, custom_plans=True) as uow:
            answers = self._decide_claims(uow.conn, org, ids)
            uow.commit()
        return answers

    def _decide_claims(self, conn: Connection, org: UUID, ids: list[UUID]) -> dict[UUID, Claim | Decided]:
        decision = self._billing.check(conn, org)
        answers: dict[UUID, Claim | Decided] = {}
        outcomes: list[audit.SendOutcome] = []
        if not decision.allowed:
            title = decision.message or "refused by billing"
            for message_id in ids:
                if repo.record_failed(
                    conn, message_id, None, code=None, title=title, details=str(decision.code)
                ):
                    answers[message_id] = Decided("refused")
                    outcomes.append(audit.SendOutcome(message_id, "failed", None, error_title=title))
        claimed = (
            repo.claim_queued_many(conn, [i for i in ids if i not in answers]) if decision.allowed else {}
        )
        for message_id in ids:
            if message_id in answers:
                continue
            row = claimed.get(message_id)
            if row is not None:
                answers[message_id] = Claim(row.attempt, row.payload, row.created_at)
            else:
                answers[message_id] = self._unclaimed(conn, message_id, outcomes)
        audit.record_send_outcomes(conn, org, outcomes)
        return answers

    def _unclaimed(self, conn: Connection, message_id: UUID, outcomes: list[audit.SendOutcome]) -> Decided:
        """The message was not `queued`: what this job means for it (see `domain.outbound`)."""
        row = repo.lock_for_claim(conn, message_id, self._lease)
        if row is None:
            return Decided("skipped")
        verdict = decide_claim(row.status, row.wamid, row.lease_expired)
        if verdict is ClaimVerdict.WAIT:
            return Decided("deferred", row.lease_left_seconds + 1.0, "in_flight")
        if verdict is ClaimVerdict.AMBIGUOUS:
            if repo.record_ambiguous(conn, message_id, row.attempts, "the previous attempt never finished"):
                outcomes.append(audit.SendOutcome(message_id, "ambiguous", row.attempts))
            return Decided("ambiguous")
        if verdict is ClaimVerdict.SEND:  # queued again since the claim looked: let a fresh job take it
            return Decided("deferred", 0.1, "in_flight")
        return Decided("skipped")

    # -- wamids ---------------------------------------------------------------------------------

    async def record_sent(
        self, organization_id: UUID, message_id: UUID, attempt: int, wamid: str
    ) -> datetime | None:
        return await self._sent.submit(organization_id, repo.SentRecord(message_id, attempt, wamid))

    def _sent_batch(
        self, org: UUID, records: Sequence[repo.SentRecord]
    ) -> list[datetime | BaseException | None]:
        created = _retrying(self._sent_org, org, list(records))
        return [created.get(record.message_id) for record in records]

    def _sent_org(self, org: UUID, records: list[repo.SentRecord]) -> dict[UUID, datetime]:
        """The wamids, and what arrived for them before they were known, in one transaction: the
        wamids' locks in one statement (in one order, so two batches never wait in a cycle), then
        the rows in another."""
        with UnitOfWork(self._engine, organization_id=org, custom_plans=True) as uow:
            repo.lock_wamids(uow.conn, [r.wamid for r in records])
            mine = repo.record_sent_many(uow.conn, records)
            audit.record_send_outcomes(uow.conn, org, _sent_outcomes(records, mine))
            for record in records:
                if (sent := mine.get(record.message_id)) is not None and sent.has_arrivals:
                    self._catch_up(uow.conn, record.wamid)
            uow.commit()
        return {message_id: sent.created_at for message_id, sent in mine.items()}

    # -- the rare outcomes ----------------------------------------------------------------------

    async def record_failed(
        self, organization_id: UUID, message_id: UUID, attempt: int | None, *, code: int | None, title: str,
        details: str | None,
    ) -> bool:  # fmt: skip
        outcome = audit.SendOutcome(message_id, "failed", attempt, error_code=code, error_title=title)
        return await self._write(
            organization_id,
            lambda c: repo.record_failed(c, message_id, attempt, code=code, title=title, details=details),
            outcome,
        )

    async def record_ambiguous(
        self, organization_id: UUID, message_id: UUID, attempt: int, detail: str
    ) -> bool:
        return await self._write(
            organization_id,
            lambda c: repo.record_ambiguous(c, message_id, attempt, detail),
            audit.SendOutcome(message_id, "ambiguous", attempt),
        )

    async def release(
        self, organization_id: UUID, message_id: UUID, attempt: int, *, code: int | None, title: str,
        details: str | None,
    ) -> bool:  # fmt: skip
        outcome = audit.SendOutcome(message_id, "released", attempt, error_code=code, error_title=title)
        return await self._write(
            organization_id,
            lambda c: repo.release_attempt(c, message_id, attempt, code=code, title=title, details=details),
            outcome,
        )

    async def defer(self, organization_id: UUID, message_id: UUID, job: Job) -> None:
        await self._write(organization_id, lambda c: repo.touch_queued(c, [message_id]))
        await asyncio.to_thread(self._jobs.publish, job)

    async def _write(
        self,
        organization_id: UUID,
        write: Callable[[Connection], T],
        outcome: audit.SendOutcome | None = None,
    ) -> T:
        """`write` in a transaction of its own; `outcome` is audited with it when `write` settled
        the attempt (a stale or duplicate job's write settles nothing and records nothing)."""

        def once() -> T:
            with UnitOfWork(self._engine, organization_id=organization_id) as uow:
                result = write(uow.conn)
                if outcome is not None and result:
                    audit.record_send_outcomes(uow.conn, organization_id, [outcome])
                uow.commit()
            return result

        return await asyncio.to_thread(_retrying, once)


def _sent_outcomes(
    records: Sequence[repo.SentRecord], mine: Mapping[UUID, object]
) -> list[audit.SendOutcome]:
    """`message.sent` for each message whose wamid was stored, once: when two attempts of one
    message share a batch, the stored one is its newest (each claim raises the attempt number)."""
    newest: dict[UUID, repo.SentRecord] = {}
    for r in records:
        if r.message_id in mine and (r.message_id not in newest or r.attempt > newest[r.message_id].attempt):
            newest[r.message_id] = r
    return [audit.SendOutcome(r.message_id, "sent", r.attempt, wamid=r.wamid) for r in newest.values()]
