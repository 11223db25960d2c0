"""Retrying letters once the fault is fixed: one, a filtered batch, everything since T; each
letter processed exactly once, the count matching what moves, the filter frozen, cancel, the
scheduled sweep, and two schedulers (or two operators) never doubling a retry."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.tables import dead_letters
from db.uow import UnitOfWork
from devkit.processes import wait_for
from domain.deadletters import DeadLetterFilter, RedriveStatus, Status
from domain.errors import PermanentError, TransientError
from domain.ports import Job
from services import deadletters as dl
from services import redrive
from tests.support.deadletter_fleet import OPERATOR, Fleet

pytestmark = pytest.mark.integration


class Broken(TransientError):
    pass


class Refused(PermanentError):
    pass


class Switch:
    """A fault the test fixes: while on, keys fail (transiently, or permanently for `p-` keys)."""

    def __init__(self) -> None:
        self.on = True

    def __call__(self, key: str, *args: object) -> None:
        if self.on:
            raise Refused(key) if key.startswith("p-") else Broken(key)


def _kill(fleet: Fleet, keys: list[str], switch: Switch) -> list[dl.Letter]:
    actor = fleet.actor(switch, throws=(PermanentError,))
    if fleet.worker is None:
        fleet.start()
    for key in keys:
        actor.send(key)
    return _wait_keys(fleet, keys)


def _wait_keys(fleet: Fleet, keys: list[str]) -> list[dl.Letter]:
    fleet.wait_letters(len(keys))
    return fleet.letters()


def _engine() -> Engine:
    from workers import resources

    return resources.current().engine


def _drain(fleet: Fleet, keys: list[str], calls_before: dict[str, int]) -> None:
    for key in keys:
        fleet.wait_calls(key, calls_before[key] + 1)
    fleet.settle()


def test_retrying_one_after_the_fix_processes_it_exactly_once(fleet: Fleet) -> None:
    switch = Switch()
    [letter] = _kill(fleet, ["one"], switch)
    switch.on = False
    before = dict(fleet.calls)
    result = dl.retry_dead_letter(_engine(), fleet.publisher, OPERATOR, letter.id)
    assert result.status is Status.RETRIED
    _drain(fleet, ["one"], before)
    assert fleet.calls["one"] == before["one"] + 1
    with pytest.raises(dl.NotRetryable):
        dl.retry_dead_letter(_engine(), fleet.publisher, OPERATOR, letter.id)
    assert fleet.letters(status=Status.RETRIED)[0].id == letter.id


def test_retrying_a_letter_twice_at_once_enqueues_it_once(fleet: Fleet) -> None:
    switch = Switch()
    [letter] = _kill(fleet, ["twice"], switch)
    switch.on = False
    before = dict(fleet.calls)
    barrier = threading.Barrier(4)

    def retry() -> str:
        barrier.wait()
        try:
            dl.retry_dead_letter(_engine(), fleet.publisher, OPERATOR, letter.id)
            return "retried"
        except dl.NotRetryable:
            return "refused"

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(lambda _: retry(), range(4)))
    assert outcomes == ["refused", "refused", "refused", "retried"]
    _drain(fleet, ["twice"], before)
    assert fleet.calls["twice"] == before["twice"] + 1


def _run_to_end(engine: Engine, fleet: Fleet, redrive_id: UUID) -> dl.Redrive:
    while True:
        ran = redrive.run_redrive(engine, fleet.publisher, redrive_id=redrive_id, budget_seconds=5)
        assert ran is not None
        if ran.done:
            return ran.redrive


def test_a_filtered_batch_moves_what_its_count_previewed_each_exactly_once(fleet: Fleet) -> None:
    switch = Switch()
    keys = [f"t-{i}" for i in range(6)] + [f"p-{i}" for i in range(4)]
    _kill(fleet, keys, switch)
    switch.on = False
    engine = _engine()
    transient = DeadLetterFilter(queue=fleet.queue, error_class="Broken")
    assert dl.count_dead_letters(engine, OPERATOR, transient) == 6
    started = dl.start_redrive(engine, OPERATOR, transient, idempotency_key="batch-1")
    assert started.redrive.matched == 6 and not started.replayed
    replay = dl.start_redrive(engine, OPERATOR, transient, idempotency_key="batch-1")
    assert replay.replayed and replay.redrive.id == started.redrive.id
    with pytest.raises(dl.IdempotencyConflict):
        dl.start_redrive(engine, OPERATOR, DeadLetterFilter(queue=fleet.queue), idempotency_key="batch-1")
    before = dict(fleet.calls)
    done = _run_to_end(engine, fleet, started.redrive.id)
    assert (done.status, done.matched, done.moved, done.failed) == (RedriveStatus.FINISHED, 6, 6, 0)
    _drain(fleet, keys[:6], before)
    assert {k: fleet.calls[k] - before[k] for k in keys} == {
        k: (1 if k.startswith("t-") else 0) for k in keys
    }
    assert dl.count_dead_letters(engine, OPERATOR, DeadLetterFilter(queue=fleet.queue)) == 4


def test_everything_since_t_is_retried_once_and_a_letter_that_dies_later_is_not_swept_in(
    fleet: Fleet,
) -> None:
    switch = Switch()
    actor = fleet.actor(switch, throws=(PermanentError,))
    fleet.start()
    actor.send("old")
    fleet.wait_letters(1)
    engine = _engine()
    t = datetime.now(UTC)
    keys = [f"since-{i}" for i in range(5)]
    for key in keys:
        actor.send(key)
    fleet.wait_letters(6)
    since_t = DeadLetterFilter(queue=fleet.queue, since=t)
    assert dl.count_dead_letters(engine, OPERATOR, since_t) == 5
    task = dl.start_redrive(engine, OPERATOR, since_t).redrive
    # Another job dies after the task was created: the frozen set does not grow.
    actor.send("late")
    fleet.wait_letters(7)
    switch.on = False
    before = dict(fleet.calls)
    done = _run_to_end(engine, fleet, task.id)
    assert (done.matched, done.moved) == (5, 5)
    _drain(fleet, keys, before)
    assert {k: fleet.calls[k] - before[k] for k in [*keys, "old", "late"]} == {
        **{k: 1 for k in keys}, "old": 0, "late": 0,
    }  # fmt: skip
    assert {letter.status for letter in fleet.letters()} == {Status.DEAD}  # old and late wait
    assert len(fleet.letters()) == 2


def test_cancel_stops_a_redrive(fleet: Fleet) -> None:
    switch = Switch()
    keys = [f"c-{i}" for i in range(30)]
    _kill(fleet, keys, switch)
    switch.on = False
    engine = _engine()
    task = dl.start_redrive(engine, OPERATOR, DeadLetterFilter(queue=fleet.queue), max_per_second=10).redrive
    first = redrive.run_redrive(engine, fleet.publisher, redrive_id=task.id, budget_seconds=0.5)
    assert first is not None and not first.done and 0 < first.redrive.moved < 30
    cancelled = dl.cancel_redrive(engine, OPERATOR, task.id)
    assert cancelled.status is RedriveStatus.CANCELLED
    assert redrive.run_redrive(engine, fleet.publisher, redrive_id=task.id) is None
    after = dl.get_redrive(engine, OPERATOR, task.id)
    assert after.moved == first.redrive.moved and after.finished_at is not None
    assert dl.count_dead_letters(engine, OPERATOR, DeadLetterFilter(queue=fleet.queue)) == 30 - after.moved


def _make_due(engine: Engine, fleet: Fleet) -> None:
    with UnitOfWork(engine, system=True) as uow:
        uow.conn.execute(
            sa.update(dead_letters)
            .where(dead_letters.c.queue == fleet.queue, dead_letters.c.next_sweep_at.is_not(None))
            .values(next_sweep_at=sa.func.now() - timedelta(seconds=1))
        )
        uow.commit()


def test_the_sweep_retries_transient_letters_and_not_permanent_ones(fleet: Fleet) -> None:
    switch = Switch()
    _kill(fleet, ["t-a", "t-b", "p-a"], switch)
    engine = _engine()
    assert redrive.sweep_transient(engine, fleet.publisher) == 0  # not due yet
    _make_due(engine, fleet)
    before = dict(fleet.calls)
    # Still broken: the swept letters die again, each as a new letter linked to its parent.
    swept = redrive.sweep_transient(engine, fleet.publisher)
    assert swept == 2
    _drain(fleet, ["t-a", "t-b"], before)
    fleet.wait_letters(2, status=Status.DEAD, error_class="Broken")
    dead = fleet.letters(error_class="Broken")
    assert all(letter.retried_from is not None and letter.sweeps == 1 for letter in dead)
    detail = dl.get_dead_letter(engine, OPERATOR, dead[0].id)
    assert [link.depth for link in detail.chain] == [-1]
    assert fleet.calls["p-a"] == before["p-a"]  # permanent: never swept
    # Fixed now; the next due sweep brings them home.
    switch.on = False
    _make_due(engine, fleet)
    before = dict(fleet.calls)
    assert redrive.sweep_transient(engine, fleet.publisher) == 2
    _drain(fleet, ["t-a", "t-b"], before)
    assert {letter.error_class for letter in fleet.letters()} == {"Refused"}


def test_two_schedulers_do_not_double_retry(fleet: Fleet) -> None:
    switch = Switch()
    keys = [f"d-{i}" for i in range(40)]
    _kill(fleet, keys, switch)
    switch.on = False
    engine = _engine()
    _make_due(engine, fleet)
    published: list[str] = []
    lock = threading.Lock()

    class Counting:
        def publish(self, job: Job) -> None:
            with lock:
                published.append(str(job.args[0]))
            fleet.publisher.publish(job)

    barrier = threading.Barrier(2)

    def scheduler(run: Callable[[], int]) -> int:
        barrier.wait()
        total = 0
        while (n := run()) > 0:
            total += n
        return total

    with ThreadPoolExecutor(2) as pool:
        totals = list(pool.map(scheduler, [lambda: redrive.sweep_transient(engine, Counting(), limit=5)] * 2))
    assert sum(totals) == 40
    assert sorted(published) == sorted(keys)  # each once
    before = {k: fleet.calls[k] - 1 for k in keys}
    _drain(fleet, keys, before)
    assert all(fleet.calls[k] == 4 for k in keys)  # three runs to die, one retry


def test_two_runners_share_one_redrive_without_doubling(fleet: Fleet) -> None:
    switch = Switch()
    keys = [f"r-{i}" for i in range(20)]
    _kill(fleet, keys, switch)
    switch.on = False
    engine = _engine()
    task = dl.start_redrive(engine, OPERATOR, DeadLetterFilter(queue=fleet.queue)).redrive
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: redrive.run_redrives(engine, fleet.publisher, 5.0), range(2)))
    assert wait_for(lambda: dl.get_redrive(engine, OPERATOR, task.id).status is RedriveStatus.FINISHED, 10)
    assert dl.get_redrive(engine, OPERATOR, task.id).moved == 20
    before = {k: fleet.calls[k] - 1 for k in keys}
    _drain(fleet, keys, before)
    assert all(fleet.calls[k] == 4 for k in keys)


def test_retention_prunes_old_retried_and_discarded_letters_only(fleet: Fleet) -> None:
    switch = Switch()
    _kill(fleet, ["keep", "gone-r", "gone-d"], switch)
    engine = _engine()
    by_key = {letter.message_id: letter for letter in fleet.letters()}
    ids = {dl.get_dead_letter(engine, OPERATOR, letter.id).args[0]: letter.id for letter in by_key.values()}
    switch.on = False
    dl.retry_dead_letter(engine, fleet.publisher, OPERATOR, ids["gone-r"])
    dl.discard_dead_letter(engine, OPERATOR, ids["gone-d"])
    assert redrive.prune(engine, timedelta(days=1)) == 0
    with UnitOfWork(engine, system=True) as uow:
        uow.conn.execute(
            sa.update(dead_letters)
            .where(dead_letters.c.id.in_([ids["gone-r"], ids["gone-d"], ids["keep"]]))
            .values(
                retried_at=sa.func.now() - timedelta(days=2),
                discarded_at=sa.case(
                    (dead_letters.c.discarded_at.is_not(None), sa.func.now() - timedelta(days=2)), else_=None
                ),
                last_failed_at=sa.func.now() - timedelta(days=2),
            )
        )
        uow.commit()
    assert redrive.prune(engine, timedelta(days=1)) >= 2
    left = {s: fleet.letters(status=s) for s in Status}
    assert [letter.id for letter in left[Status.DEAD]] == [ids["keep"]]
    assert left[Status.RETRIED] == [] and left[Status.DISCARDED] == []


def test_the_scheduler_runs_redrive_tasks_and_sweeps(fleet: Fleet) -> None:
    from workers import resources
    from workers import scheduler as sched

    switch = Switch()
    keys = [f"s-{i}" for i in range(8)]
    _kill(fleet, keys, switch)
    switch.on = False
    engine = _engine()
    task = dl.start_redrive(engine, OPERATOR, DeadLetterFilter(queue=fleet.queue, ids=None)).redrive
    tasks = [
        sched.PeriodicTask(t.name, t.interval_seconds, t.run)
        for t in sched.TASKS
        if t.name.startswith("dead-letter")
    ]
    assert {t.name for t in tasks} == {
        "dead-letter-redrives", "dead-letter-sweep", "dead-letter-prune", "dead-letter-gauges",
    }  # fmt: skip
    stop = threading.Event()
    runner = threading.Thread(target=sched.run, args=(stop, tasks, resources.current()))
    runner.start()
    try:
        assert wait_for(
            lambda: dl.get_redrive(engine, OPERATOR, task.id).status is RedriveStatus.FINISHED, 30
        )
    finally:
        stop.set()
        runner.join(30)
    before = {k: fleet.calls[k] - 1 for k in keys}
    _drain(fleet, keys, before)
    assert all(fleet.calls[k] == 4 for k in keys)
