"""Dead-letter use cases: list, count, inspect, retry one, redrive a frozen batch, discard.

The HTTP API, the CLI and the console call these and nothing else. Every function takes the
caller's `Scope`: one organization (a tenant key sees and touches only its own letters, enforced
by row-level security, so a filter naming another tenant finds nothing) or an operator's, which
spans every tenant. `DeadLetterFilter` is shared by list, count, batch retry and discard, so what
a count previewed is what the batch takes.

A retry moves the letter to `retrying` and commits **before** publishing the original message again
(same queue, actor, args, kwargs and options, a fresh retry count, `dead_letter_id` linking back);
a confirmed publish makes it `retried`. A crash in between leaves it `retrying`, and the
scheduler republishes it under the same message id (the letter row is its own outbox). Two retries
of one letter at once enqueue it once: only one of them moves it out of `dead`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy.engine import Engine, RowMapping

from db.repos import deadletters as repo
from db.uow import UnitOfWork
from domain import cursors
from domain.deadletters import (
    LETTER_OPTION,
    RUN_OPTIONS,
    SWEEPS_OPTION,
    DeadLetterFilter,
    RedriveStatus,
    Scope,
    Status,
)
from domain.errors import FleetError
from domain.ports import Job, JobPublisher
from services.deadletter_metrics import REDRIVES

__all__ = [
    "ChainLink",
    "DeadLetterFilter",
    "DeadLetterNotFound",
    "IdempotencyConflict",
    "InvalidCursor",
    "Letter",
    "LetterDetail",
    "NotRetryable",
    "Page",
    "Redrive",
    "RedriveNotFound",
    "RedriveStarted",
    "RetryResult",
    "Scope",
    "Status",
    "cancel_redrive",
    "count_dead_letters",
    "discard_dead_letter",
    "discard_dead_letters",
    "get_dead_letter",
    "get_redrive",
    "list_dead_letters",
    "list_redrives",
    "publish_claimed",
    "redrive_view",
    "retry_dead_letter",
    "retry_job",
    "start_redrive",
    "unit_of_work",
]

log = logging.getLogger(__name__)

MAX_PAGE = 500


class DeadLetterNotFound(FleetError):
    """No letter with this id in the caller's scope (another tenant's letters do not exist for it)."""


class RedriveNotFound(FleetError):
    """No redrive task with this id in the caller's scope."""


class NotRetryable(FleetError):
    """The letter is not `dead` (already retrying, retried or discarded): nothing was done."""

    def __init__(self, letter_id: UUID, status: str) -> None:
        self.letter_id = letter_id
        self.status = status
        super().__init__(f"dead letter {letter_id} is {status}, not dead")


class IdempotencyConflict(FleetError):
    """The Idempotency-Key already started a redrive with another filter or rate."""


class InvalidCursor(FleetError, ValueError):
    """A cursor these functions did not issue."""


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter as listed."""

    id: UUID
    organization_id: UUID | None
    queue: str
    actor: str
    message_id: str
    error_class: str | None
    error_message: str | None
    error: str
    transient: bool
    attempts: int
    status: Status
    sweeps: int
    first_failed_at: datetime
    last_failed_at: datetime
    retried_at: datetime | None
    discarded_at: datetime | None
    retried_from: UUID | None


@dataclass(frozen=True, slots=True)
class ChainLink:
    """Another letter of the same job: `depth` < 0 came before (its retry died as this one),
    > 0 came after (this one's retry died again)."""

    id: UUID
    status: Status
    error_class: str | None
    last_failed_at: datetime
    depth: int


@dataclass(frozen=True, slots=True)
class LetterDetail:
    """The whole record: the original message intact, the traceback, and the chain."""

    letter: Letter
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    traceback: str | None
    retry_message_id: str | None
    next_sweep_at: datetime | None
    chain: tuple[ChainLink, ...]


@dataclass(frozen=True, slots=True)
class Page:
    items: tuple[Letter, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class RetryResult:
    letter_id: UUID
    status: Status  # retried once confirmed; retrying if the publish failed (the sweep finishes it)
    message_id: str


@dataclass(frozen=True, slots=True)
class Redrive:
    id: UUID
    organization_id: UUID | None
    status: RedriveStatus
    filter: DeadLetterFilter
    max_per_second: float | None
    matched: int
    moved: int
    failed: int
    skipped: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class RedriveStarted:
    redrive: Redrive
    replayed: bool  # the Idempotency-Key had already started this task


def unit_of_work(engine: Engine, scope: Scope, publisher: JobPublisher | None = None) -> UnitOfWork:
    """A unit of work seeing exactly what `scope` may see."""
    if scope.operator:
        return UnitOfWork(engine, system=True, publisher=publisher)
    return UnitOfWork(engine, organization_id=scope.organization_id, publisher=publisher)


# --- reading -------------------------------------------------------------------------------------


def _existing(uow: UnitOfWork, letter_id: UUID) -> RowMapping:
    row = repo.get(uow.conn, letter_id)
    if row is None:
        raise DeadLetterNotFound(f"no dead letter {letter_id}")
    return row


def list_dead_letters(
    engine: Engine, scope: Scope, f: DeadLetterFilter, *, limit: int = 50, cursor: str | None = None
) -> Page:
    """Letters matching `f`, newest failure first, `limit` per page; pass the page's `next_cursor`
    back as `cursor` for the next one (keyset paging: rows that arrive meanwhile never shift it)."""
    limit = max(1, min(limit, MAX_PAGE))
    try:
        after = cursors.time_and_id(cursor) if cursor else None
    except cursors.InvalidCursor as exc:
        raise InvalidCursor(str(exc)) from exc
    with unit_of_work(engine, scope) as uow:
        rows = repo.list_page(uow.conn, f, after=after, limit=limit + 1)
    page = tuple(_letter(r) for r in rows[:limit])
    return Page(page, cursors.next_cursor(rows, limit, "last_failed_at", "id"))


def count_dead_letters(engine: Engine, scope: Scope, f: DeadLetterFilter) -> int:
    """How many letters match `f`: the preview of a batch retry or discard of the same filter."""
    with unit_of_work(engine, scope) as uow:
        return repo.count(uow.conn, f)


def get_dead_letter(engine: Engine, scope: Scope, letter_id: UUID) -> LetterDetail:
    """The whole letter with its chain of earlier and later letters; `DeadLetterNotFound` if the
    scope cannot see it."""
    with unit_of_work(engine, scope) as uow:
        row = _existing(uow, letter_id)
        links = repo.chain(uow.conn, letter_id)
    return LetterDetail(
        letter=_letter(row),
        args=list(row["args"]),
        kwargs=dict(row["kwargs"]),
        options=dict(row["options"]),
        traceback=row["traceback"],
        retry_message_id=row["retry_message_id"],
        next_sweep_at=row["next_sweep_at"],
        chain=tuple(
            ChainLink(r["id"], Status(r["status"]), r["error_class"], r["last_failed_at"], int(r["depth"]))
            for r in links
        ),
    )


# --- retrying ------------------------------------------------------------------------------------


def retry_job(row: RowMapping) -> Job:
    """The original message again: same queue, actor, args, kwargs and options, minus what belonged
    to its failed run (retry count, traceback, ETA), plus the link to its letter."""
    options = {k: v for k, v in dict(row["options"]).items() if k not in RUN_OPTIONS}
    options[LETTER_OPTION] = str(row["id"])
    options[SWEEPS_OPTION] = int(row["sweeps"])
    return Job(
        queue=row["queue"],
        actor=row["actor"],
        args=tuple(row["args"]),
        kwargs=dict(row["kwargs"]),
        options=options,
        message_id=row["retry_message_id"],
    )


def publish_claimed(
    engine: Engine,
    publisher: JobPublisher,
    scope: Scope,
    rows: Sequence[RowMapping],
    trigger: str,
    *,
    pace: Iterable[None] | None = None,
) -> tuple[list[UUID], list[UUID]]:
    """Publish letters already committed as `retrying`, then mark the confirmed ones `retried`.

    Stops at the first failed publish (the broker is likely down): those left stay `retrying` for
    the scheduler's republish. `pace`, when given, is advanced before each publish (a rate cap).
    Returns (moved, failed) letter ids."""
    moved: list[UUID] = []
    failed: list[UUID] = []
    ticks = iter(pace) if pace is not None else None
    for i, row in enumerate(rows):
        if ticks is not None:
            next(ticks, None)
        try:
            publisher.publish(retry_job(row))
        except Exception:
            log.warning("could not re-enqueue dead letters; the sweep will", exc_info=True,
                        extra={"left": len(rows) - i, "trigger": trigger})  # fmt: skip
            failed.extend(UUID(str(r["id"])) for r in rows[i:])
            break
        moved.append(UUID(str(row["id"])))
    if moved:
        with unit_of_work(engine, scope) as uow:
            repo.mark_retried(uow.conn, moved)
            uow.commit()
    REDRIVES.labels("moved", trigger).inc(len(moved))
    REDRIVES.labels("failed", trigger).inc(len(failed))
    return moved, failed


def retry_dead_letter(engine: Engine, publisher: JobPublisher, scope: Scope, letter_id: UUID) -> RetryResult:
    """Re-enqueue one letter now. `DeadLetterNotFound` if the scope cannot see it, `NotRetryable`
    if it is not `dead` (another retry got there first, or it was discarded)."""
    with unit_of_work(engine, scope) as uow:
        row = _existing(uow, letter_id)
        claimed = repo.claim_for_retry(uow.conn, [letter_id])
        uow.commit()
    if not claimed:
        with unit_of_work(engine, scope) as uow:
            now = repo.get(uow.conn, letter_id)
        raise NotRetryable(letter_id, now["status"] if now is not None else row["status"])
    moved, _ = publish_claimed(engine, publisher, scope, claimed, "api")
    status = Status.RETRIED if moved else Status.RETRYING
    return RetryResult(letter_id, status, str(claimed[0]["retry_message_id"]))


def _fingerprint(f: DeadLetterFilter, max_per_second: float | None) -> str:
    canonical = orjson.dumps(
        {"filter": f.as_json(), "max_per_second": max_per_second}, option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(canonical).hexdigest()


def start_redrive(
    engine: Engine,
    scope: Scope,
    f: DeadLetterFilter,
    *,
    max_per_second: float | None = None,
    idempotency_key: str | None = None,
) -> RedriveStarted:
    """Create a redrive task of every letter matching `f` now (frozen: letters that die later are
    not swept in), run by the scheduler at up to `max_per_second` (None: as fast as the broker
    confirms). The same `idempotency_key` in the same scope returns the first task
    (`replayed`); with another filter or rate it raises `IdempotencyConflict`."""
    if max_per_second is not None and max_per_second <= 0:
        raise ValueError("max_per_second must be positive")
    fingerprint = _fingerprint(f, max_per_second)
    with unit_of_work(engine, scope) as uow:
        row = repo.create_redrive(
            uow.conn,
            organization_id=scope.organization_id,
            scope_key=scope.key,
            f=f,
            max_per_second=max_per_second,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
        )
        if row is None:
            assert idempotency_key is not None
            existing = repo.find_redrive_by_key(uow.conn, scope.key, idempotency_key)
            if existing is None or existing["fingerprint"] != fingerprint:
                raise IdempotencyConflict("this Idempotency-Key started a redrive with another filter")
            return RedriveStarted(redrive_view(existing), replayed=True)
        uow.commit()
    return RedriveStarted(redrive_view(row), replayed=False)


def get_redrive(engine: Engine, scope: Scope, redrive_id: UUID) -> Redrive:
    """A redrive task's progress; `RedriveNotFound` if the scope cannot see it."""
    with unit_of_work(engine, scope) as uow:
        row = repo.get_redrive(uow.conn, redrive_id)
    if row is None:
        raise RedriveNotFound(f"no redrive {redrive_id}")
    return redrive_view(row)


def list_redrives(engine: Engine, scope: Scope, *, limit: int = 20) -> list[Redrive]:
    """The scope's redrive tasks, newest first (an operator sees every tenant's and its own)."""
    with unit_of_work(engine, scope) as uow:
        rows = repo.list_redrives(uow.conn, max(1, min(limit, MAX_PAGE)))
    return [redrive_view(r) for r in rows]


def cancel_redrive(engine: Engine, scope: Scope, redrive_id: UUID) -> Redrive:
    """Stop a redrive before its next batch (what it already moved stays moved); a finished task is
    returned as it is."""
    with unit_of_work(engine, scope) as uow:
        row = repo.cancel_redrive(uow.conn, redrive_id)
        if row is None:
            raise RedriveNotFound(f"no redrive {redrive_id}")
        uow.commit()
    return redrive_view(row)


# --- discarding ----------------------------------------------------------------------------------


def discard_dead_letters(engine: Engine, scope: Scope, f: DeadLetterFilter) -> int:
    """Discard every dead letter matching `f` (kept for audit, out of the default listing); returns
    how many. Only what `f` matches now, within the scope: nothing that arrives afterwards."""
    with unit_of_work(engine, scope) as uow:
        ids = repo.discard(uow.conn, f)
        uow.commit()
    return len(ids)


def discard_dead_letter(engine: Engine, scope: Scope, letter_id: UUID) -> Letter:
    """Discard one dead letter. `DeadLetterNotFound` / `NotRetryable` (when it is not dead)."""
    with unit_of_work(engine, scope) as uow:
        row = _existing(uow, letter_id)
        if not repo.discard(uow.conn, DeadLetterFilter(ids=(letter_id,))):
            raise NotRetryable(letter_id, row["status"])
        now = repo.get(uow.conn, letter_id)
        uow.commit()
    assert now is not None
    return _letter(now)


# --- mapping -------------------------------------------------------------------------------------


def _letter(r: RowMapping) -> Letter:
    return Letter(
        id=r["id"],
        organization_id=r["organization_id"],
        queue=r["queue"],
        actor=r["actor"],
        message_id=r["message_id"],
        error_class=r["error_class"],
        error_message=r["error_message"],
        error=r["error"],
        transient=bool(r["transient"]),
        attempts=int(r["attempts"]),
        status=Status(r["status"]),
        sweeps=int(r["sweeps"]),
        first_failed_at=r["first_failed_at"],
        last_failed_at=r["last_failed_at"],
        retried_at=r["retried_at"],
        discarded_at=r["discarded_at"],
        retried_from=r["retried_from"],
    )


def redrive_view(r: RowMapping) -> Redrive:
    return Redrive(
        id=r["id"],
        organization_id=r["organization_id"],
        status=RedriveStatus(r["status"]),
        filter=DeadLetterFilter.from_json(dict(r["filter"])),
        max_per_second=r["max_per_second"],
        matched=int(r["matched"]),
        moved=int(r["moved"]),
        failed=int(r["failed"]),
        skipped=int(r["skipped"]),
        created_at=r["created_at"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
    )
