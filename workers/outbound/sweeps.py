"""Scheduler sweeps that keep the promise "nothing silently stays queued or sending".

- A message in `sending` past the send lease lost its worker mid-call: Meta may have it, so it
  becomes `ambiguous` (never re-sent).
- A message in `queued` untouched for a long time, with no outbox row left, may have lost its job
  (a broker failure the outbox could not see): its job is published again. A duplicate job is
  harmless, since the claim serialises jobs on the row and the second finds nothing to do.
"""

from __future__ import annotations

from typing import Final
from uuid import UUID

from db.repos import audit
from db.repos import outbound as repo
from db.uow import UnitOfWork
from domain.outbound import send_job
from workers import resources
from workers.outbound import metrics
from workers.templates import sync_all

BATCH: Final = 500
# Longer than any deferral (breaker open periods, pacing, the lease wait) a healthy job goes through.
ORPHAN_AFTER_SECONDS: Final = 15 * 60.0


def expire_stuck_sending(res: resources.Resources) -> int:
    with UnitOfWork(res.engine, system=True) as uow:
        expired = repo.expire_stuck_sending(uow.conn, res.graph.options.send_lease_seconds, BATCH)
        # The audit trail names every outcome of a send, this one too, in the same transaction.
        by_org: dict[UUID, list[audit.SendOutcome]] = {}
        for e in expired:
            outcome = audit.SendOutcome(
                e.message_id, "ambiguous", e.attempt, error_title=repo.STUCK_SENDING_TITLE
            )
            by_org.setdefault(e.organization_id, []).append(outcome)
        for organization_id, outcomes in by_org.items():
            audit.record_send_outcomes(uow.conn, organization_id, outcomes)
        uow.commit()
    metrics.SWEPT.labels("ambiguous").inc(len(expired))
    return len(expired)


def requeue_orphaned(res: resources.Resources, older_than_seconds: float = ORPHAN_AFTER_SECONDS) -> int:
    with UnitOfWork(res.engine, system=True) as uow:
        orphans = repo.claim_orphaned_queued(uow.conn, older_than_seconds, BATCH)
        uow.commit()
    for orphan in orphans:
        res.jobs.publish(
            send_job(orphan.organization_id, orphan.message_id, orphan.phone_number_id, orphan.to)
        )
    metrics.SWEPT.labels("requeued").inc(len(orphans))
    return len(orphans)


def sync_templates(res: resources.Resources) -> int:
    return sync_all(res.engine, res.graph.client, res.stopping.is_set)
