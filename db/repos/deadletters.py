"""SQL of the dead letters and their redrive tasks. Never commits: the caller's unit of work does.

Row-level security scopes every statement to the unit of work's tenant (or to every tenant for an
operator's system scope); the filter's `organization_id` narrows further, never widens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, RowMapping

from db.tables import dead_letter_redrive_items as items
from db.tables import dead_letter_redrives as redrives
from db.tables import dead_letters as dl
from db.tables import organizations
from domain.deadletters import DeadLetterFilter, RedriveStatus, Status


def _where(f: DeadLetterFilter) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = [dl.c.status == f.status.value]
    if f.queue is not None:
        conditions.append(dl.c.queue == f.queue)
    if f.actor is not None:
        conditions.append(dl.c.actor == f.actor)
    if f.organization_id is not None:
        conditions.append(dl.c.organization_id == f.organization_id)
    if f.error_class is not None:
        conditions.append(dl.c.error_class == f.error_class)
    if f.text is not None:
        escaped = f.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(dl.c.error.ilike(f"%{escaped}%", escape="\\"))
    if f.since is not None:
        conditions.append(dl.c.last_failed_at >= f.since)
    if f.until is not None:
        conditions.append(dl.c.last_failed_at < f.until)
    if f.ids is not None:
        conditions.append(dl.c.id.in_(list(f.ids)) if f.ids else sa.false())
    return conditions


_SUMMARY = (
    dl.c.id, dl.c.organization_id, dl.c.queue, dl.c.actor, dl.c.message_id, dl.c.error_class,
    dl.c.error_message, dl.c.error, dl.c.transient, dl.c.attempts, dl.c.status, dl.c.sweeps,
    dl.c.first_failed_at, dl.c.last_failed_at, dl.c.retried_at, dl.c.discarded_at, dl.c.retried_from,
)  # fmt: skip


def list_page(
    conn: Connection, f: DeadLetterFilter, *, after: tuple[datetime, UUID] | None, limit: int
) -> list[RowMapping]:
    """Newest failure first, `limit` rows after the keyset `after` (last_failed_at, id)."""
    stmt = sa.select(*_SUMMARY).where(*_where(f))
    if after is not None:
        stmt = stmt.where(
            sa.tuple_(dl.c.last_failed_at, dl.c.id) < sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
        )
    stmt = stmt.order_by(dl.c.last_failed_at.desc(), dl.c.id.desc()).limit(limit)
    return list(conn.execute(stmt).mappings())


def count(conn: Connection, f: DeadLetterFilter) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(dl).where(*_where(f))).scalar_one())


def get(conn: Connection, letter_id: UUID) -> RowMapping | None:
    return conn.execute(sa.select(dl).where(dl.c.id == letter_id)).mappings().one_or_none()


_CHAIN = sa.text(
    """
    WITH RECURSIVE earlier(id, retried_from, depth) AS (
        SELECT id, retried_from, 0 FROM dead_letters WHERE id = :id
        UNION ALL
        SELECT d.id, d.retried_from, e.depth - 1 FROM dead_letters d JOIN earlier e ON d.id = e.retried_from
        WHERE e.depth > -1000
    ), later(id, depth) AS (
        SELECT id, 0 FROM dead_letters WHERE id = :id
        UNION ALL
        SELECT d.id, l.depth + 1 FROM dead_letters d JOIN later l ON d.retried_from = l.id
        WHERE l.depth < 1000
    )
    SELECT d.id, d.status, d.error_class, d.last_failed_at, c.depth
    FROM (
        SELECT id, depth FROM earlier WHERE depth < 0
        UNION ALL SELECT id, depth FROM later WHERE depth > 0
    ) c
    JOIN dead_letters d ON d.id = c.id
    ORDER BY c.depth
    """
)


def chain(conn: Connection, letter_id: UUID) -> list[RowMapping]:
    """The letters this one came from (negative depth, oldest first) and those its retries became."""
    return list(conn.execute(_CHAIN, {"id": letter_id}).mappings())


def record(conn: Connection, values: Mapping[str, Any], retried_from: UUID | None) -> None:
    """Insert a letter, or refresh it when the same message died again (a redelivery after a crash)."""
    row = dict(values)
    if row.get("organization_id") is not None:
        # A tenant id that names no organization (deleted, or garbage in the message) must not
        # lose the letter to a foreign-key error: keep it unowned, visible to operators.
        owner = conn.execute(
            sa.select(organizations.c.id).where(organizations.c.id == row["organization_id"])
        ).scalar_one_or_none()
        row["organization_id"] = owner
    if retried_from is not None:
        # The parent may have been pruned or belong to no visible scope: link only if it exists.
        exists = conn.execute(sa.select(dl.c.id).where(dl.c.id == retried_from)).scalar_one_or_none()
        row["retried_from"] = exists
    stmt = insert(dl).values(**row)
    stmt = stmt.on_conflict_do_update(
        index_elements=[dl.c.message_id],
        set_={
            "error": stmt.excluded.error,
            "error_class": stmt.excluded.error_class,
            "error_message": stmt.excluded.error_message,
            "transient": stmt.excluded.transient,
            "traceback": stmt.excluded.traceback,
            "attempts": stmt.excluded.attempts,
            "next_sweep_at": stmt.excluded.next_sweep_at,
            "status": Status.DEAD.value,
            "last_failed_at": sa.func.now(),
            "updated_at": sa.func.now(),
        },
    )
    conn.execute(stmt)


_CLAIMED = (
    dl.c.id, dl.c.organization_id, dl.c.queue, dl.c.actor, dl.c.args, dl.c.kwargs, dl.c.options,
    dl.c.retry_message_id, dl.c.sweeps,
)  # fmt: skip


def claim_for_retry(conn: Connection, ids: Sequence[UUID], *, sweep: bool = False) -> list[RowMapping]:
    """Move those of `ids` still dead to `retrying` (row locks: a letter is claimed once, however many
    retry it at the same time), each with the message id its re-enqueue will carry."""
    if not ids:
        return []
    values: dict[str, Any] = {
        "status": Status.RETRYING.value,
        "retried_at": sa.func.now(),
        "retry_message_id": sa.cast(sa.func.gen_random_uuid(), sa.Text),
        "updated_at": sa.func.now(),
    }
    if sweep:
        values["sweeps"] = dl.c.sweeps + 1
    stmt = (
        sa.update(dl)
        .where(dl.c.id.in_(list(ids)), dl.c.status == Status.DEAD.value)
        .values(**values)
        .returning(*_CLAIMED)
    )
    return list(conn.execute(stmt).mappings())


def mark_retried(conn: Connection, ids: Sequence[UUID]) -> None:
    if ids:
        conn.execute(
            sa.update(dl)
            .where(dl.c.id.in_(list(ids)), dl.c.status == Status.RETRYING.value)
            .values(status=Status.RETRIED.value, updated_at=sa.func.now())
        )


def stale_retrying(conn: Connection, older_than: timedelta, limit: int) -> list[RowMapping]:
    """Letters whose re-enqueue committed but was never confirmed (a crash, a broker outage)."""
    stmt = (
        sa.select(*_CLAIMED)
        .where(dl.c.status == Status.RETRYING.value, dl.c.retried_at < sa.func.now() - older_than)
        .order_by(dl.c.retried_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(conn.execute(stmt).mappings())


def due_for_sweep(conn: Connection, limit: int) -> list[UUID]:
    """Transient letters whose next sweep is due, locked so another scheduler skips them."""
    stmt = (
        sa.select(dl.c.id)
        .where(
            dl.c.status == Status.DEAD.value,
            dl.c.transient.is_(True),
            dl.c.next_sweep_at.is_not(None),
            dl.c.next_sweep_at <= sa.func.now(),
        )
        .order_by(dl.c.next_sweep_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [UUID(str(i)) for i in conn.execute(stmt).scalars()]


def discard(conn: Connection, f: DeadLetterFilter) -> list[UUID]:
    """Discard the dead letters matching `f` (kept for audit); returns their ids."""
    if f.status is not Status.DEAD:
        return []
    stmt = (
        sa.update(dl)
        .where(*_where(f))
        .values(status=Status.DISCARDED.value, discarded_at=sa.func.now(), updated_at=sa.func.now())
        .returning(dl.c.id)
    )
    return [UUID(str(i)) for i in conn.execute(stmt).scalars()]


def prune(conn: Connection, older_than: timedelta) -> int:
    """Delete retried and discarded letters, and finished redrive tasks, older than `older_than`."""
    cutoff = sa.func.now() - older_than
    letters = conn.execute(
        sa.delete(dl).where(
            dl.c.status.in_([Status.RETRIED.value, Status.DISCARDED.value]),
            sa.func.coalesce(dl.c.discarded_at, dl.c.retried_at, dl.c.last_failed_at) < cutoff,
        )
    ).rowcount
    conn.execute(
        sa.delete(redrives).where(
            redrives.c.status.in_([RedriveStatus.FINISHED.value, RedriveStatus.CANCELLED.value]),
            redrives.c.finished_at < cutoff,
        )
    )
    return int(letters or 0)


def depth_by_group(conn: Connection) -> list[RowMapping]:
    """Dead letters by queue, actor and error class, with the oldest failure (for the gauges)."""
    stmt = (
        sa.select(
            dl.c.queue, dl.c.actor, dl.c.error_class, sa.func.count().label("n"),
            sa.func.min(dl.c.first_failed_at).label("oldest"),
        )
        .where(dl.c.status == Status.DEAD.value)
        .group_by(dl.c.queue, dl.c.actor, dl.c.error_class)
    )  # fmt: skip
    return list(conn.execute(stmt).mappings())


# --- redrive tasks -------------------------------------------------------------------------------


def find_redrive_by_key(conn: Connection, scope_key: str, idempotency_key: str) -> RowMapping | None:
    return (
        conn.execute(
            sa.select(redrives).where(
                redrives.c.scope_key == scope_key, redrives.c.idempotency_key == idempotency_key
            )
        )
        .mappings()
        .one_or_none()
    )


def create_redrive(
    conn: Connection,
    *,
    organization_id: UUID | None,
    scope_key: str,
    f: DeadLetterFilter,
    max_per_second: float | None,
    idempotency_key: str | None,
    fingerprint: str | None,
) -> RowMapping | None:
    """A new task with its letters frozen now (those matching `f` at this instant); None when the
    idempotency key is already taken in this scope."""
    stmt = (
        insert(redrives)
        .values(
            organization_id=organization_id,
            scope_key=scope_key,
            filter=f.as_json(),
            max_per_second=max_per_second,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
        )
        .on_conflict_do_nothing(index_elements=[redrives.c.scope_key, redrives.c.idempotency_key])
        .returning(redrives.c.id)
    )
    redrive_id = conn.execute(stmt).scalar_one_or_none()
    if redrive_id is None:
        return None
    frozen = sa.select(sa.literal(redrive_id, type_=redrives.c.id.type), dl.c.id, dl.c.organization_id).where(
        *_where(f)
    )
    conn.execute(sa.insert(items).from_select(["redrive_id", "dead_letter_id", "organization_id"], frozen))
    matched = conn.execute(
        sa.select(sa.func.count()).select_from(items).where(items.c.redrive_id == redrive_id)
    ).scalar_one()
    row = (
        conn.execute(
            sa.update(redrives).where(redrives.c.id == redrive_id).values(matched=matched).returning(redrives)
        )
        .mappings()
        .one()
    )
    return row


def list_redrives(conn: Connection, limit: int) -> list[RowMapping]:
    return list(
        conn.execute(sa.select(redrives).order_by(redrives.c.created_at.desc()).limit(limit)).mappings()
    )


def get_redrive(conn: Connection, redrive_id: UUID) -> RowMapping | None:
    return conn.execute(sa.select(redrives).where(redrives.c.id == redrive_id)).mappings().one_or_none()


def cancel_redrive(conn: Connection, redrive_id: UUID) -> RowMapping | None:
    """Cancel a task that has not finished; the runner stops before its next batch."""
    conn.execute(
        sa.update(redrives)
        .where(
            redrives.c.id == redrive_id,
            redrives.c.status.in_([RedriveStatus.PENDING.value, RedriveStatus.RUNNING.value]),
        )
        .values(status=RedriveStatus.CANCELLED.value, finished_at=sa.func.now(), updated_at=sa.func.now())
    )
    return get_redrive(conn, redrive_id)


def lease_redrive(conn: Connection, lease: timedelta, redrive_id: UUID | None = None) -> RowMapping | None:
    """Take (or extend) the lease of a runnable task: one whose lease expired or was never taken.
    `FOR UPDATE SKIP LOCKED` plus the lease keep two runners off the same task."""
    pick = (
        sa.select(redrives.c.id)
        .where(
            redrives.c.status.in_([RedriveStatus.PENDING.value, RedriveStatus.RUNNING.value]),
            sa.or_(redrives.c.lease_until.is_(None), redrives.c.lease_until < sa.func.now()),
        )
        .order_by(redrives.c.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if redrive_id is not None:
        pick = pick.where(redrives.c.id == redrive_id)
    stmt = (
        sa.update(redrives)
        .where(redrives.c.id == pick.scalar_subquery())
        .values(
            status=RedriveStatus.RUNNING.value,
            lease_until=sa.func.now() + lease,
            started_at=sa.func.coalesce(redrives.c.started_at, sa.func.now()),
            updated_at=sa.func.now(),
        )
        .returning(redrives)
    )
    return conn.execute(stmt).mappings().one_or_none()


def renew_lease(conn: Connection, redrive_id: UUID, lease: timedelta) -> RowMapping | None:
    """Extend a held lease; None when the task was cancelled (or finished) meanwhile."""
    return (
        conn.execute(
            sa.update(redrives)
            .where(redrives.c.id == redrive_id, redrives.c.status == RedriveStatus.RUNNING.value)
            .values(lease_until=sa.func.now() + lease, updated_at=sa.func.now())
            .returning(redrives)
        )
        .mappings()
        .one_or_none()
    )


def next_items(conn: Connection, redrive_id: UUID, limit: int) -> list[UUID]:
    stmt = (
        sa.select(items.c.dead_letter_id)
        .where(items.c.redrive_id == redrive_id, items.c.outcome.is_(None))
        .order_by(items.c.dead_letter_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [UUID(str(i)) for i in conn.execute(stmt).scalars()]


def settle_items(conn: Connection, redrive_id: UUID, outcomes: Mapping[UUID, str]) -> None:
    """Record each item's outcome (moved, failed, skipped) and add them to the task's counters."""
    if not outcomes:
        return
    by_outcome: dict[str, list[UUID]] = {}
    for letter_id, outcome in outcomes.items():
        by_outcome.setdefault(outcome, []).append(letter_id)
    for outcome, ids in by_outcome.items():
        conn.execute(
            sa.update(items)
            .where(items.c.redrive_id == redrive_id, items.c.dead_letter_id.in_(ids))
            .values(outcome=outcome)
        )
    conn.execute(
        sa.update(redrives)
        .where(redrives.c.id == redrive_id)
        .values(
            moved=redrives.c.moved + len(by_outcome.get("moved", ())),
            failed=redrives.c.failed + len(by_outcome.get("failed", ())),
            skipped=redrives.c.skipped + len(by_outcome.get("skipped", ())),
            updated_at=sa.func.now(),
        )
    )


def finish_redrive(conn: Connection, redrive_id: UUID) -> None:
    conn.execute(
        sa.update(redrives)
        .where(redrives.c.id == redrive_id, redrives.c.status == RedriveStatus.RUNNING.value)
        .values(
            status=RedriveStatus.FINISHED.value, finished_at=sa.func.now(), lease_until=None,
            updated_at=sa.func.now(),
        )
    )  # fmt: skip


def release_redrive(conn: Connection, redrive_id: UUID) -> None:
    """Give the lease back (the runner stops its slice; the task goes on at the next tick)."""
    conn.execute(
        sa.update(redrives)
        .where(redrives.c.id == redrive_id, redrives.c.status == RedriveStatus.RUNNING.value)
        .values(lease_until=None)
    )
