"""The pure rules of dead letters: scopes, the shared filter, the sweep's growing intervals, and
which failures are outages or transient."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import exc as sa_exc

from domain.deadletters import DeadLetterFilter, Scope, Status, SweepPolicy
from domain.errors import GraphAmbiguousOutcome, PermanentError, TransientError
from workers.failures import is_infrastructure, is_transient


def test_a_scope_is_one_tenant_or_an_operator() -> None:
    org = uuid.uuid4()
    assert Scope.tenant(org).key == str(org) and not Scope.tenant(org).operator
    assert Scope.everyone().key == "operator"
    with pytest.raises(ValueError):
        Scope(organization_id=org, operator=True)
    with pytest.raises(ValueError):
        Scope()


def test_the_filter_defaults_to_dead_and_survives_being_stored() -> None:
    f = DeadLetterFilter(
        queue="outbound", organization_id=uuid.uuid4(), text="131", since=datetime(2026, 12, 1, tzinfo=UTC),
        ids=(uuid.uuid4(),),
    )  # fmt: skip
    assert f.status is Status.DEAD
    assert DeadLetterFilter.from_json(f.as_json()) == f
    with pytest.raises(ValueError):
        DeadLetterFilter(since=datetime(2026, 12, 2, tzinfo=UTC), until=datetime(2026, 12, 1, tzinfo=UTC))
    with pytest.raises(ValueError):
        DeadLetterFilter(since=datetime(2026, 12, 2))


def test_sweeps_come_at_growing_intervals_up_to_a_cap() -> None:
    policy = SweepPolicy(
        first_interval=timedelta(minutes=5), factor=3, max_interval=timedelta(hours=1), max_sweeps=4
    )
    assert [policy.next_interval(n) for n in range(5)] == [
        timedelta(minutes=5), timedelta(minutes=15), timedelta(minutes=45), timedelta(hours=1), None,
    ]  # fmt: skip


def _wrapped(exc: BaseException) -> BaseException:
    try:
        try:
            raise exc
        except BaseException as inner:
            raise RuntimeError("handler failed") from inner
    except RuntimeError as outer:
        return outer


def test_outages_are_told_apart_from_the_jobs_own_failures() -> None:
    down = sa_exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused"))
    assert is_infrastructure(down) and is_transient(down)
    assert is_infrastructure(_wrapped(psycopg.OperationalError("server closed the connection")))
    assert is_infrastructure(ConnectionRefusedError())
    timeout = sa_exc.OperationalError("SELECT 1", {}, psycopg.errors.QueryCanceled("statement timeout"))
    assert not is_infrastructure(timeout) and is_transient(timeout)
    assert not is_infrastructure(TransientError("throttled")) and is_transient(TransientError("throttled"))
    assert not is_transient(PermanentError("131026"))
    assert not is_transient(GraphAmbiguousOutcome("read timeout after sending"))
    assert not is_transient(KeyError("bug"))
