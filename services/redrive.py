"""Running dead-letter redrives, and the scheduled sweep: work the scheduler does (the CLI runs a
redrive itself when asked to wait for it).

- `run_redrive` takes the lease of one runnable task (`FOR UPDATE SKIP LOCKED`, so two schedulers
  never run the same task), then in batches: claims the task's next frozen letters still `dead`
  (committed as `retrying`), publishes them (confirmed), marks them `retried` and adds the batch to
  the task's counters. A cancel is seen before the next batch. `max_per_second` paces the
  publishes; a batch is at most a second's worth, so a cancel takes effect within about a second.
- `sweep_transient` redrives letters whose error was transient once their next sweep is due
  (growing intervals, a cap per chain; `SweepPolicy`); permanent ones are never swept.
- `republish_stale` finishes retries whose status change committed but whose publish was never
  confirmed (a crash or a broker outage in between), under the same message id.
- `prune` deletes retried and discarded letters past retention.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from sqlalchemy.engine import Engine, RowMapping

from db.repos import deadletters as repo
from domain.deadletters import RedriveStatus, Scope
from domain.ports import JobPublisher
from services.deadletter_metrics import PRUNED, REDRIVES
from services.deadletters import Redrive, publish_claimed, retry_job, unit_of_work
from services.deadletters import redrive_view as _redrive

LEASE = timedelta(seconds=60)
BATCH = 500
SWEEP_BATCH = 200
STALE_RETRYING = timedelta(seconds=60)
OPERATOR = Scope.everyone()


@dataclass(frozen=True, slots=True)
class RedriveSlice:
    redrive: Redrive
    done: bool  # finished or cancelled; else the lease was given back to go on later


def _paced(rate: float | None, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Yields once per publish, sleeping so that the n-th comes no sooner than start + n / rate."""
    start = clock()
    n = 0
    while True:
        if rate is not None:
            wait = start + n / rate - clock()
            if wait > 0:
                time.sleep(wait)
        n += 1
        yield None


def run_redrive(
    engine: Engine,
    publisher: JobPublisher,
    *,
    redrive_id: UUID | None = None,
    budget_seconds: float = 5.0,
    on_progress: Callable[[Redrive], None] | None = None,
) -> RedriveSlice | None:
    """Run one runnable redrive task (the given one, or the oldest) for up to `budget_seconds`;
    None when there is none to run (or another runner holds it)."""
    with unit_of_work(engine, OPERATOR) as uow:
        task = repo.lease_redrive(uow.conn, LEASE, redrive_id)
        uow.commit()
    if task is None:
        return None
    task_id: UUID = task["id"]
    rate: float | None = task["max_per_second"]
    batch = BATCH if rate is None else max(1, min(BATCH, int(rate)))
    pace = _paced(rate)
    deadline = time.monotonic() + budget_seconds
    while True:
        with unit_of_work(engine, OPERATOR) as uow:
            held = repo.renew_lease(uow.conn, task_id, LEASE)
            if held is None:  # cancelled (or finished elsewhere)
                uow.commit()
                return RedriveSlice(_redrive(_current(engine, task_id)), done=True)
            if time.monotonic() >= deadline:
                repo.release_redrive(uow.conn, task_id)
                uow.commit()
                return RedriveSlice(_redrive(held), done=False)
            ids = repo.next_items(uow.conn, task_id, batch)
            if not ids:
                repo.finish_redrive(uow.conn, task_id)
                uow.commit()
                return RedriveSlice(_redrive(_current(engine, task_id)), done=True)
            claimed = repo.claim_for_retry(uow.conn, ids)
            uow.commit()
        moved, failed = publish_claimed(engine, publisher, OPERATOR, claimed, "batch", pace=pace)
        claimed_ids = set(moved) | set(failed)
        skipped = [i for i in ids if i not in claimed_ids]
        outcomes = {**{i: "moved" for i in moved}, **{i: "failed" for i in failed}}
        outcomes.update({i: "skipped" for i in skipped})
        REDRIVES.labels("skipped", "batch").inc(len(skipped))
        with unit_of_work(engine, OPERATOR) as uow:
            repo.settle_items(uow.conn, task_id, outcomes)
            uow.commit()
        if on_progress is not None:
            on_progress(_redrive(_current(engine, task_id)))
        if failed:
            # The broker refused: leave the rest for a later slice rather than fail them all now.
            with unit_of_work(engine, OPERATOR) as uow:
                repo.release_redrive(uow.conn, task_id)
                uow.commit()
            return RedriveSlice(_redrive(_current(engine, task_id)), done=False)


def _current(engine: Engine, task_id: UUID) -> RowMapping:
    with unit_of_work(engine, OPERATOR) as uow:
        row = repo.get_redrive(uow.conn, task_id)
    assert row is not None
    return row


def run_redrives(engine: Engine, publisher: JobPublisher, budget_seconds: float = 5.0) -> int:
    """The scheduler's tick: run runnable tasks within the budget; returns letters moved."""
    deadline = time.monotonic() + budget_seconds
    moved = 0
    while time.monotonic() < deadline:
        ran = run_redrive(engine, publisher, budget_seconds=max(0.1, deadline - time.monotonic()))
        if ran is None:
            break
        moved += ran.redrive.moved
        if not ran.done:
            break
    return moved


def sweep_transient(engine: Engine, publisher: JobPublisher, limit: int = SWEEP_BATCH) -> int:
    """Retry transient letters whose next sweep is due; locked rows (another scheduler's) are skipped."""
    with unit_of_work(engine, OPERATOR) as uow:
        ids = repo.due_for_sweep(uow.conn, limit)
        claimed = repo.claim_for_retry(uow.conn, ids, sweep=True)
        uow.commit()
    moved, _ = publish_claimed(engine, publisher, OPERATOR, claimed, "sweep")
    return len(moved)


def republish_stale(engine: Engine, publisher: JobPublisher, limit: int = BATCH) -> int:
    """Publish again the retries committed but never confirmed, holding their row locks meanwhile."""
    with unit_of_work(engine, OPERATOR) as uow:
        rows = repo.stale_retrying(uow.conn, STALE_RETRYING, limit)
        if not rows:
            return 0
        done = []
        for row in rows:
            try:
                publisher.publish(retry_job(row))
            except Exception:
                break
            done.append(row["id"])
        repo.mark_retried(uow.conn, done)
        uow.commit()
    REDRIVES.labels("moved", "republish").inc(len(done))
    return len(done)


def prune(engine: Engine, retention: timedelta) -> int:
    with unit_of_work(engine, OPERATOR) as uow:
        pruned = repo.prune(uow.conn, retention)
        uow.commit()
    PRUNED.inc(pruned)
    return pruned


__all__ = [
    "RedriveSlice",
    "RedriveStatus",
    "prune",
    "republish_stale",
    "run_redrive",
    "run_redrives",
    "sweep_transient",
]
