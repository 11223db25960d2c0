"""Bulk jobs: their states, what each operation may do in each, and how an item's outcome follows
from its message's. No I/O.

A job is `pending` when planned, `running` once a chunk ran, `paused` ⇄ `running` on request, and
ends `completed` (every item succeeded), `completed_with_errors` (some failed or were skipped) or
`failed` (it could not run at all). Cancelling moves it to `cancelling` until the chunks already
submitted settle, then `cancelled`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from domain.jobs import BULK_QUEUE, RUN_BULK_CHUNK_ACTOR, SETTLE_BULK_CHUNK_ACTOR
from domain.ports import Job

BROADCAST: Final = "broadcast"
CONVERSATIONS_UPDATE: Final = "conversations.update"
CONTACTS_IMPORT: Final = "contacts.import"
KINDS: Final = (BROADCAST, CONVERSATIONS_UPDATE, CONTACTS_IMPORT)

PENDING: Final = "pending"
RUNNING: Final = "running"
PAUSED: Final = "paused"
CANCELLING: Final = "cancelling"
CANCELLED: Final = "cancelled"
COMPLETED: Final = "completed"
COMPLETED_WITH_ERRORS: Final = "completed_with_errors"
FAILED: Final = "failed"
JOB_STATUSES: Final = (
    PENDING, RUNNING, PAUSED, CANCELLING, CANCELLED, COMPLETED, COMPLETED_WITH_ERRORS, FAILED
)  # fmt: skip
FINISHED: Final = frozenset({CANCELLED, COMPLETED, COMPLETED_WITH_ERRORS, FAILED})
ACTIVE: Final = frozenset({PENDING, RUNNING})

# Items.
ITEM_PENDING: Final = "pending"
ITEM_SUBMITTED: Final = "submitted"  # its message is queued; the outcome is the message's
ITEM_SUCCEEDED: Final = "succeeded"
ITEM_FAILED: Final = "failed"
ITEM_SKIPPED: Final = "skipped"  # never attempted: opted out, bad variables, duplicate, invalid
ITEM_CANCELLED: Final = "cancelled"
ITEM_STATUSES: Final = (
    ITEM_PENDING, ITEM_SUBMITTED, ITEM_SUCCEEDED, ITEM_FAILED, ITEM_SKIPPED, ITEM_CANCELLED
)  # fmt: skip

# Chunks.
CHUNK_PENDING: Final = "pending"
CHUNK_SUBMITTED: Final = "submitted"
CHUNK_DONE: Final = "done"
CHUNK_CANCELLED: Final = "cancelled"

# Chunks of one job released at once: enough to keep the number busy while one settles, few
# enough that another job's chunks (and interactive sends) interleave with them on the queues.
RELEASE_WINDOW: Final = 3
# Once running, a job keeps about this many seconds of its number's sends released: a chunk is
# released only after an earlier one settles (its outcomes polled every half second or more, the
# next chunk then run and its jobs published), so at 1,000 mps three chunks of 500 (1.5 s of
# sends) left the number idle while the pipeline refilled.
RELEASE_SECONDS: Final = 3.0
MIN_CHUNK: Final = 10
MAX_CHUNK: Final = 500

# Meta codes that say this recipient cannot get the message, so resuming failed items skips them:
# 131026 undeliverable, 131050 opted out of marketing, 131021 recipient is the sender. An
# `ambiguous` item may have been delivered: re-sending it could duplicate, so it is never resumed.
PERMANENT_FOR_RECIPIENT: Final = frozenset({"131026", "131050", "131021", "ambiguous"})

# Message status → item status, for a message that has an outcome.
_OUTCOMES: Final[Mapping[str, str]] = {
    "sent": ITEM_SUCCEEDED,
    "delivered": ITEM_SUCCEEDED,
    "read": ITEM_SUCCEEDED,
    "failed": ITEM_FAILED,
    "ambiguous": ITEM_FAILED,
}
SETTLED_MESSAGE_STATUSES: Final = tuple(_OUTCOMES)


def item_outcome(message_status: str) -> str | None:
    """The item's status once its message has this status (None: not settled yet)."""
    return _OUTCOMES.get(message_status)


def chunk_size_for(mps: int) -> int:
    """About one second of the number's sends per chunk, within bounds: a chunk settles quickly,
    so a pause or cancel takes effect within seconds and other work interleaves."""
    return max(MIN_CHUNK, min(MAX_CHUNK, mps))


def release_window(chunk_size: int, mps: int) -> int:
    """Chunks of a running job released at once: `RELEASE_WINDOW`, or more where that is under
    `RELEASE_SECONDS` of the number's rate."""
    per_chunk = max(1, chunk_size) / max(1, mps)
    return max(RELEASE_WINDOW, math.ceil(RELEASE_SECONDS / per_chunk))


def chunks_of(total: int, size: int) -> int:
    return (total + size - 1) // size


def final_status(counts: Mapping[str, int], cancelling: bool) -> str:
    """The status a job ends in once no chunk is left to run or settle."""
    if cancelling:
        return CANCELLED
    if counts.get(ITEM_FAILED, 0) or counts.get(ITEM_SKIPPED, 0):
        return COMPLETED_WITH_ERRORS
    return COMPLETED


def can_pause(status: str) -> bool:
    return status in ACTIVE


def can_resume(status: str, scope: str) -> bool:
    """`pending` resumes a paused job; `failed` re-plans the failed items of a paused or finished one."""
    if scope == "pending":
        return status == PAUSED
    return status in (PAUSED, COMPLETED_WITH_ERRORS, RUNNING)


def can_cancel(status: str) -> bool:
    return status not in FINISHED and status != CANCELLING


def settle_delay_ms(chunk_size: int, mps: int) -> int:
    """When to look at a submitted chunk's outcomes: about when its sends should be done."""
    return int(min(10_000, max(500, 1_000 * chunk_size / max(1, mps))))


def run_chunk_job(organization_id: str, job_id: str, chunk: int, delay_ms: int | None = None) -> Job:
    return Job(
        BULK_QUEUE,
        RUN_BULK_CHUNK_ACTOR,
        kwargs={"organization_id": organization_id, "job_id": job_id, "chunk": chunk},
        delay_ms=delay_ms,
    )


def settle_chunk_job(organization_id: str, job_id: str, chunk: int, delay_ms: int | None = None) -> Job:
    return Job(
        BULK_QUEUE,
        SETTLE_BULK_CHUNK_ACTOR,
        kwargs={"organization_id": organization_id, "job_id": job_id, "chunk": chunk},
        delay_ms=delay_ms,
    )
