"""Running a bulk job's chunks: the use cases behind the `bulk` queue's actors and the scheduler's
stale-chunk sweep.

A chunk is executed in one transaction with its row locked, so a worker killed at any instant
leaves it either untouched (redelivered, or re-enqueued by the sweep) or done; a second run of a
chunk that is no longer `pending` does nothing. For a broadcast, "done" means submitted: every
pending item became a `queued` message, written by `services.sends.queue_messages` (the whole
chunk in a few statements) and sent by its own `send_message` job (through the outbox, after
commit), exactly as `POST /api/v1/messages` does. The chunk is then settled: its items take their
messages' outcomes, and once all have one the job's counters move by the chunk's tallies, the
next chunk is released, and the last chunk to settle finishes the job.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy.engine import Connection, Engine, RowMapping

from db.repos import bulk as repo
from db.repos import outbound as outbound_repo
from db.repos import templates
from db.uow import UnitOfWork
from domain import bulk as rules
from domain.outbound import send_job
from domain.ports import JobPublisher
from services import bulk_apply
from services.bulk import number_mps, release, window_of
from services.sends import OutgoingMessage, queue_messages, recipient_refusal, template_refusal

log = logging.getLogger(__name__)


class ProgressChannel(Protocol):
    """Best-effort fan-out of progress to the tenant's live channel (Redis pub/sub); losing an
    event is acceptable."""

    def publish(self, channel: str, payload: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class RunPorts:
    engine: Engine
    jobs: JobPublisher
    realtime: ProgressChannel | None = None


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    """What a run or settle did, for metrics and logs."""

    action: str  # submitted, applied, settled, waiting, held, cancelled, nothing
    counts: Mapping[str, int] = field(default_factory=dict)
    kind: str | None = None
    finished: str | None = None  # the job's final status, when this finished it
    duration_seconds: float | None = None


def realtime_channel(organization_id: UUID | str) -> str:
    """The organization's live channel (the inbox listens on it too)."""
    return f"org:{organization_id}"


def run_chunk(ports: RunPorts, organization_id: UUID, job_id: UUID, chunk: int) -> ChunkOutcome:
    with UnitOfWork(ports.engine, organization_id=organization_id, publisher=ports.jobs) as uow:
        conn = uow.conn
        status = repo.lock_chunk(conn, job_id, chunk)
        if status != rules.CHUNK_PENDING:
            return ChunkOutcome("nothing")
        job = repo.get_job(conn, job_id)
        assert job is not None  # the chunk's foreign key
        if job["status"] == rules.PAUSED:
            repo.unrelease(conn, job_id, chunk)
            uow.commit()
            return ChunkOutcome("held", kind=job["kind"])
        if job["status"] in (rules.CANCELLING, rules.CANCELLED, rules.FAILED):
            outcome = _cancel_chunk(uow, organization_id, job, chunk)
            uow.commit()
            return outcome
        if job["kind"] == rules.BROADCAST and job["phone_number_id"] not in outbound_repo.phone_numbers(conn):
            outcome = _fail_job(uow, organization_id, job, chunk, "phone_number_unknown",
                                "The job's number is no longer one of the organization's.")  # fmt: skip
            uow.commit()
            return outcome
        repo.mark_running(conn, job_id)
        if job["kind"] == rules.BROADCAST:
            _submit_broadcast(uow, organization_id, job, chunk)
            uow.enqueue(
                rules.settle_chunk_job(
                    str(organization_id), str(job_id), chunk,
                    rules.settle_delay_ms(int(job["chunk_size"]), _mps(conn, job)),
                )
            )  # fmt: skip
            uow.commit()
            return ChunkOutcome("submitted", kind=job["kind"])
        bulk_apply.apply_chunk(conn, organization_id, job, repo.pending_items(conn, job_id, chunk))
        outcome = _settle_done(uow, organization_id, job, chunk)
        uow.commit()
        return outcome


def settle_chunk(ports: RunPorts, organization_id: UUID, job_id: UUID, chunk: int) -> ChunkOutcome:
    with UnitOfWork(ports.engine, organization_id=organization_id, publisher=ports.jobs) as uow:
        conn = uow.conn
        if repo.lock_chunk(conn, job_id, chunk) != rules.CHUNK_SUBMITTED:
            return ChunkOutcome("nothing")
        job = repo.get_job(conn, job_id)
        assert job is not None
        repo.settle_from_messages(conn, job_id, chunk)
        counts = repo.chunk_counts(conn, job_id, chunk)
        if counts.get(rules.ITEM_SUBMITTED, 0):
            repo.set_chunk(conn, job_id, chunk)  # a heartbeat: the sweep leaves a live chunk alone
            uow.enqueue(
                rules.settle_chunk_job(
                    str(organization_id), str(job_id), chunk,
                    rules.settle_delay_ms(counts[rules.ITEM_SUBMITTED], _mps(conn, job)),
                )
            )  # fmt: skip
            uow.commit()
            return ChunkOutcome("waiting", counts, kind=job["kind"])
        outcome = _settle_done(uow, organization_id, job, chunk, counts)
        uow.commit()
    _notify(ports, organization_id, job_id, outcome)
    return outcome


def _mps(conn: Connection, job: RowMapping) -> int:
    return number_mps(conn, job["phone_number_id"])


def _submit_broadcast(uow: UnitOfWork, organization_id: UUID, job: RowMapping, chunk: int) -> None:
    """The chunk's pending items become `queued` messages and their `send_message` jobs, for the
    whole chunk in a few statements, each item through the send use case's rules."""
    conn = uow.conn
    items = repo.pending_items(conn, job["id"], chunk)
    number = str(job["phone_number_id"])
    template = job["params"]["template"]
    contacts = repo.contacts_by_wa_id(conn, [i.recipient for i in items])
    known = templates.named(conn, str(template.get("name", "")))
    now = datetime.now(UTC)
    results: list[repo.ItemResult] = []
    accepted: list[tuple[repo.ChunkItem, OutgoingMessage, outbound_repo.ContactFacts | None]] = []
    for item in items:
        message = OutgoingMessage(
            to=item.recipient,
            type="template",
            body={
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "type": "template",
                "template": {**template, "components": list(item.params.get("components") or [])},
            },
            phone_number_id=number,
        )
        row = contacts.get(item.recipient)
        facts = outbound_repo.ContactFacts(row.id, row.opted_out, row.last_inbound_at) if row else None
        # The send rules again at send time: an opt-out (or a template change) since planning wins.
        refusal = recipient_refusal(facts, message, now) or template_refusal(message, known)
        if refusal is not None:
            results.append(
                repo.ItemResult(
                    item.id, rules.ITEM_SKIPPED, error_code=refusal.code, error_title=refusal.message
                )
            )
            continue
        accepted.append((item, message, facts))
    message_ids = queue_messages(conn, organization_id, [(m, f) for _, m, f in accepted], number)
    uow.enqueue_many(
        [
            send_job(organization_id, mid, number, item.recipient)
            for (item, _, _), mid in zip(accepted, message_ids, strict=True)
        ]
    )
    results.extend(
        repo.ItemResult(item.id, rules.ITEM_SUBMITTED, message_id=mid)
        for (item, _, _), mid in zip(accepted, message_ids, strict=True)
    )
    repo.set_items(conn, results)
    repo.set_chunk(conn, job["id"], chunk, rules.CHUNK_SUBMITTED, submitted_at=now)


def _fail_job(
    uow: UnitOfWork, organization_id: UUID, job: RowMapping, chunk: int, code: str, message: str
) -> ChunkOutcome:
    """The job cannot go on (its number is gone): it fails with the reason, and its items not
    started are cancelled; chunks already submitted still settle."""
    repo.set_status(uow.conn, job["id"], rules.FAILED, error_code=code, error_message=message,
                    finished_at=datetime.now(UTC))  # fmt: skip
    outcome = _cancel_chunk(uow, organization_id, job, chunk)
    repo.add_counts(uow.conn, job["id"], repo.cancel_pending(uow.conn, job["id"]))
    return ChunkOutcome("failed", outcome.counts, kind=job["kind"], finished=rules.FAILED)


def _cancel_chunk(uow: UnitOfWork, organization_id: UUID, job: RowMapping, chunk: int) -> ChunkOutcome:
    items = repo.pending_items(uow.conn, job["id"], chunk)
    repo.set_items(uow.conn, [repo.ItemResult(i.id, rules.ITEM_CANCELLED) for i in items])
    return _settle_done(uow, organization_id, job, chunk, status=rules.CHUNK_CANCELLED)


def _settle_done(
    uow: UnitOfWork,
    organization_id: UUID,
    job: RowMapping,
    chunk: int,
    counts: Mapping[str, int] | None = None,
    status: str = rules.CHUNK_DONE,
) -> ChunkOutcome:
    """The chunk is settled: count it into the job (which locks the job's row, so of two chunks
    settling at once the second sees the first), release the next, finish the job if it was the
    last."""
    conn, job_id = uow.conn, job["id"]
    tallies = dict(counts if counts is not None else repo.chunk_counts(conn, job_id, chunk))
    repo.set_chunk(conn, job_id, chunk, status, settled_at=datetime.now(UTC))
    repo.add_counts(conn, job_id, tallies)
    current = repo.get_job(conn, job_id)
    assert current is not None
    if current["status"] in (rules.RUNNING, rules.PENDING):
        window = window_of(conn, job["kind"], job["phone_number_id"], int(job["chunk_size"]))
        release(uow, organization_id, job_id, window)
    finished = None
    duration = None
    if repo.unsettled_chunks(conn, job_id) == 0 and current["status"] not in rules.FINISHED:
        finished = rules.final_status(
            {rules.ITEM_FAILED: int(current["failed"]), rules.ITEM_SKIPPED: int(current["skipped"])},
            cancelling=current["status"] == rules.CANCELLING,
        )
        now = datetime.now(UTC)
        repo.set_status(conn, job_id, finished, finished_at=now)
        duration = (now - (current["started_at"] or current["created_at"])).total_seconds()
    action = "cancelled" if status == rules.CHUNK_CANCELLED else "settled"
    return ChunkOutcome(action, tallies, kind=job["kind"], finished=finished, duration_seconds=duration)


def _notify(ports: RunPorts, organization_id: UUID, job_id: UUID, outcome: ChunkOutcome) -> None:
    if ports.realtime is None:
        return
    payload: dict[str, Any] = {
        "type": "bulk_job.progress" if outcome.finished is None else "bulk_job.finished",
        "bulk_job_id": str(job_id),
        "chunk_counts": dict(outcome.counts),
        "status": outcome.finished,
    }
    try:
        ports.realtime.publish(realtime_channel(organization_id), payload)
    except Exception:
        log.warning("bulk progress not published", extra={"bulk_job_id": str(job_id)}, exc_info=True)


def sweep_stale_chunks(ports: RunPorts, older_than_seconds: float, limit: int = 500) -> int:
    """Re-enqueue chunks released but untouched for `older_than_seconds`: a pending one runs
    again, a submitted one is settled again (both are no-ops if another run got there first)."""
    with UnitOfWork(ports.engine, system=True, publisher=ports.jobs) as uow:
        stale = repo.claim_stale_chunks(uow.conn, older_than_seconds, limit)
        for s in stale:
            make = rules.run_chunk_job if s.status == rules.CHUNK_PENDING else rules.settle_chunk_job
            uow.enqueue(make(str(s.organization_id), str(s.job_id), s.chunk))
        uow.commit()
    return len(stale)


def items_pending(engine: Engine) -> int:
    """Items of every unfinished job still without an outcome (for the fleet gauge)."""
    with UnitOfWork(engine, system=True) as uow:
        return repo.items_pending(uow.conn)
