"""The message rows of the send path in Postgres (`SendStore`), claims and wamids batched.

The claims of the sends asking at the same moment are one statement, one transaction and one
round trip, whichever organizations they belong to: the unit of work's send batch scope
(`UnitOfWork(send_batch=...)`) lets the statement reach those organizations' messages, and the
statement pairs every message with the organization its job named, so a job naming the wrong one
claims nothing. The wamids recorded at the same moment share another (their locks, then one
UPDATE that also appends `message.sent` for each row it stored). A batch of a dozen
organizations thus costs what a batch of one does. Batches run one at a time per kind and process
by default (`batch_concurrency`): the sends that ask while one runs form the next, so the batches
grow with the load. They run with custom plans (the batched UPDATEs' generic plans were an order
of magnitude slower per row). What a batch cannot settle by itself is the rare case and has a
transaction of its own: an organization whose plan is due to be checked again, the jobs of
messages that were not `queued`; statuses that arrived before their wamid are applied in the
wamids' transaction, under their own organization's scope. The rare outcomes (failed, ambiguous,
released, deferred) are a transaction each. Every transaction commits in exactly one place before
its callers hear anything, and each outcome is appended to the audit trail in the transaction
that records it.
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
from workers.outbound.coalesce import Coalescer
from workers.outbound.ports import Claim, Decided

log = logging.getLogger(__name__)
T = TypeVar("T")
# A claim's job: its organization and message.
Key = tuple[UUID, UUID]
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
        batch_concurrency: int = 1,
    ) -> None:
        self._engine = engine
        self._jobs = jobs
        self._catch_up = catch_up
        self._lease = lease_seconds
        self._billing = billing or BillingGate()
        # The claims (and the wamids) asking at the same moment share one transaction.
        self._claims: Coalescer[Key, Claim | Decided] = Coalescer(
            self._claim_batch, concurrency=batch_concurrency
        )
        self._sent: Coalescer[repo.SentRecord, datetime | None] = Coalescer(
            self._sent_batch, concurrency=batch_concurrency
        )

    # -- claims ---------------------------------------------------------------------------------

    async def claim(self, organization_id: UUID, message_id: UUID) -> Claim | Decided:
        return await self._claims.submit((organization_id, message_id))

    def _claim_batch(self, keys: Sequence[Key]) -> list[Claim | Decided | BaseException]:
        wanted = _by_organization(keys)
        # Each transaction's failure goes to its own jobs only: another part of the batch may
        # have committed its claims already, and those jobs must go on to send.
        answers: dict[Key, Claim | Decided | BaseException] = {}
        scoped = {org: ids for org, ids in wanted.items() if self._billing.allowed_recently(org)}
        for org, ids in wanted.items():
            if org not in scoped:  # every few seconds per organization: its plan is checked
                _answer(answers, {org: ids}, self._claim_org, org, ids)
        if scoped:
            _answer(answers, scoped, self._claim_batched, scoped)
            left = {org: [i for i in ids if (org, i) not in answers] for org, ids in scoped.items()}
            left = {org: ids for org, ids in left.items() if ids}
            if left:
                _answer(answers, left, self._settle_unclaimed, left)
        out: list[Claim | Decided | BaseException] = []
        seen: set[Key] = set()
        # A duplicate job in the same batch finds its message claimed by the first, in flight.
        in_flight = Decided("deferred", self._lease + 1.0, "in_flight")
        for key in keys:
            out.append(in_flight if key in seen else answers[key])
            seen.add(key)
        return out

    def _claim_batched(self, wanted: Mapping[UUID, list[UUID]]) -> dict[Key, Claim]:
        """The claims of organizations whose plan allowed sends a moment ago: one statement under
        the send batch's scope, one transaction, one round trip (a deadlock victim or a dropped
        connection is rolled back whole, so it is tried again whole). The messages not claimed
        are left out."""
        jobs = [(org, message_id) for org, ids in wanted.items() for message_id in ids]
        with UnitOfWork(self._engine, send_batch=list(wanted), custom_plans=True) as uow:
            [rows] = uow.pipeline([repo.claim_queued(jobs)], commit=True)
        return {
            key: Claim(row.attempt, row.payload, row.created_at) for key, row in repo.claimed(rows).items()
        }

    def _claim_org(self, org: UUID, ids: list[UUID]) -> dict[Key, Claim | Decided]:
        """One organization's claims after its plan is checked, in one transaction."""
        with UnitOfWork(self._engine, organization_id=org, custom_plans=True) as uow:
            answers = self._decide_claims(uow, org, ids)
            uow.commit()
        return {(org, message_id): answer for message_id, answer in answers.items()}

    def _decide_claims(self, uow: UnitOfWork, org: UUID, ids: list[UUID]) -> dict[UUID, Claim | Decided]:
        conn = uow.conn
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
        to_claim = [(org, i) for i in ids if i not in answers] if decision.allowed else []
        claimed = repo.claimed(uow.pipeline([repo.claim_queued(to_claim)])[0]) if to_claim else {}
        for message_id in ids:
            if message_id in answers:
                continue
            row = claimed.get((org, message_id))
            if row is not None:
                answers[message_id] = Claim(row.attempt, row.payload, row.created_at)
            else:
                answers[message_id] = self._unclaimed(conn, message_id, outcomes)
        audit.record_send_outcomes(conn, org, outcomes)
        return answers

    def _settle_unclaimed(self, left: Mapping[UUID, list[UUID]]) -> dict[Key, Decided]:
        """What the jobs of messages that were not `queued` mean (a redelivery, a duplicate, a
        send in flight elsewhere): one transaction, each organization's under its scope."""
        answers: dict[Key, Decided] = {}
        orgs = list(left)
        with UnitOfWork(self._engine, organization_id=orgs[0]) as uow:
            for org in orgs:
                uow.switch_tenant(org)
                outcomes: list[audit.SendOutcome] = []
                for message_id in left[org]:
                    answers[(org, message_id)] = self._unclaimed(uow.conn, message_id, outcomes)
                audit.record_send_outcomes(uow.conn, org, outcomes)
            uow.commit()
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
        return await self._sent.submit(repo.SentRecord(organization_id, message_id, attempt, wamid))

    def _sent_batch(self, records: Sequence[repo.SentRecord]) -> list[datetime | BaseException | None]:
        created = _retrying(self._sent_batched, list(dict.fromkeys(records)))
        return [created.get((r.organization_id, r.message_id)) for r in records]

    def _sent_batched(self, records: list[repo.SentRecord]) -> dict[Key, datetime]:
        """The wamids, and what arrived for them before they were known, in one transaction: the
        wamids' locks in one statement (in one order, so two batches never wait in a cycle), then
        the rows in another, under the send batch's scope, in one round trip; the statuses that
        arrived early (rare) under their own organization's scope."""
        orgs = sorted({r.organization_id for r in records})
        with UnitOfWork(self._engine, send_batch=orgs, custom_plans=True) as uow:
            _, rows = uow.pipeline([repo.lock_wamids([r.wamid for r in records]), repo.record_sent(records)])
            stored = repo.recorded(rows)
            for (org, _), sent in sorted(stored.items()):
                if sent.has_arrivals:
                    uow.switch_tenant(org)
                    self._catch_up(uow.conn, sent.wamid)
            uow.commit()
        return {key: sent.created_at for key, sent in stored.items()}

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


def _answer(
    answers: dict[Key, Claim | Decided | BaseException],
    jobs: Mapping[UUID, list[UUID]],
    run: Callable[..., Mapping[Key, Claim | Decided]],
    *args: object,
) -> None:
    """`run(*args)`'s answers (a transaction, retried on a blip), or its exception for each of
    `jobs`."""
    try:
        answers.update(_retrying(run, *args))
    except Exception as exc:
        answers.update({(org, message_id): exc for org, ids in jobs.items() for message_id in ids})


def _by_organization(keys: Sequence[Key]) -> dict[UUID, list[UUID]]:
    """Each organization's messages, once each and in order, the organizations in one order."""
    grouped: dict[UUID, dict[UUID, None]] = {}
    for org, message_id in keys:
        grouped.setdefault(org, {})[message_id] = None
    return {org: list(grouped[org]) for org in sorted(grouped)}
