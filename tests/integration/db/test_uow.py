from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from config import get_settings
from db import tables as t
from db.engine import create_db_engine
from db.repos.organizations import create_organization
from db.uow import UnitOfWork, UnitOfWorkError
from devkit.jobs import RecordingPublisher
from domain.ports import Job

pytestmark = pytest.mark.integration


def _org_exists(engine: Engine, org: uuid.UUID) -> bool:
    with UnitOfWork(engine, system=True) as uow:
        return (
            uow.conn.execute(sa.select(t.organizations.c.id).where(t.organizations.c.id == org)).first()
            is not None
        )


def test_rolls_back_on_exception(engine: Engine) -> None:
    org = uuid.uuid4()
    with pytest.raises(RuntimeError), UnitOfWork(engine, system=True) as uow:
        create_organization(uow.conn, "doomed", org)
        raise RuntimeError("handler failed")
    assert not _org_exists(engine, org)


def test_rolls_back_unless_committed(engine: Engine) -> None:
    org = uuid.uuid4()
    with UnitOfWork(engine, system=True) as uow:
        create_organization(uow.conn, "forgotten", org)
    assert not _org_exists(engine, org)


def test_commits_once(engine: Engine) -> None:
    org = uuid.uuid4()
    with UnitOfWork(engine, system=True) as uow:
        create_organization(uow.conn, "kept", org)
        uow.commit()
        with pytest.raises(UnitOfWorkError):
            uow.commit()
    assert _org_exists(engine, org)


def test_scope_is_one_tenant_or_system() -> None:
    with pytest.raises(UnitOfWorkError):
        UnitOfWork(sa.create_engine("postgresql+psycopg://x@127.0.0.1/x"))
    with pytest.raises(UnitOfWorkError):
        UnitOfWork(
            sa.create_engine("postgresql+psycopg://x@127.0.0.1/x"), organization_id=uuid.uuid4(), system=True
        )


def test_jobs_are_published_only_after_commit(engine: Engine) -> None:
    publisher = RecordingPublisher()
    job = Job("media", "fetch_media", ("published-after-commit",))
    with UnitOfWork(engine, system=True, publisher=publisher) as uow:
        uow.enqueue(job)
        assert publisher.jobs == []
        uow.commit()
    assert publisher.jobs == [job]
    with UnitOfWork(engine, system=True) as uow:
        assert (
            uow.conn.execute(
                sa.select(sa.func.count())
                .select_from(t.outbox)
                .where(t.outbox.c.args[0].astext == "published-after-commit")
            ).scalar_one()
            == 0
        )


def test_jobs_of_a_rolled_back_unit_are_never_published(engine: Engine) -> None:
    publisher = RecordingPublisher()
    with UnitOfWork(engine, system=True, publisher=publisher) as uow:
        uow.enqueue(Job("media", "fetch_media", ("never",)))
    assert publisher.jobs == []
    with UnitOfWork(engine, system=True) as uow:
        assert (
            uow.conn.execute(
                sa.select(sa.func.count()).select_from(t.outbox).where(t.outbox.c.args[0].astext == "never")
            ).scalar_one()
            == 0
        )


def test_a_failed_publish_leaves_the_job_in_the_outbox(engine: Engine) -> None:
    with (
        pytest.raises(ConnectionError),
        UnitOfWork(engine, system=True, publisher=RecordingPublisher(fail=True)) as uow,
    ):
        uow.enqueue(Job("media", "fetch_media", ("kept-for-sweep",)))
        uow.commit()
    with UnitOfWork(engine, system=True) as uow:
        count = uow.conn.execute(
            sa.select(sa.func.count())
            .select_from(t.outbox)
            .where(t.outbox.c.args[0].astext == "kept-for-sweep")
        ).scalar_one()
        uow.conn.execute(sa.delete(t.outbox).where(t.outbox.c.args[0].astext == "kept-for-sweep"))
        uow.commit()
    assert count == 1


class _BatchFailsSome:
    """A batch publisher that publishes every job but those whose argument is odd."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.batches = 0

    def publish(self, job: Job) -> None:
        raise AssertionError("a batch publisher is given the jobs as a batch")

    def publish_many(self, jobs: Sequence[Job]) -> list[BaseException | None]:
        self.batches += 1
        out: list[BaseException | None] = []
        for job in jobs:
            if int(job.args[1]) % 2:
                out.append(ConnectionError("broker down"))
            else:
                self.jobs.append(job)
                out.append(None)
        return out


def test_a_batch_publish_leaves_exactly_the_jobs_it_did_not_publish_in_the_outbox(engine: Engine) -> None:
    marker = f"batch-{uuid.uuid4()}"
    publisher = _BatchFailsSome()
    with (
        pytest.raises(ConnectionError),
        UnitOfWork(engine, system=True, publisher=publisher) as uow,
    ):
        uow.enqueue_many([Job("media", "fetch_media", (marker, n)) for n in range(10)])
        uow.commit()
    with UnitOfWork(engine, system=True) as uow:
        kept = (
            uow.conn.execute(sa.select(t.outbox.c.args).where(t.outbox.c.args[0].astext == marker))
            .scalars()
            .all()
        )
        uow.conn.execute(sa.delete(t.outbox).where(t.outbox.c.args[0].astext == marker))
        uow.commit()
    assert publisher.batches == 1
    assert sorted(args[1] for args in kept) == [1, 3, 5, 7, 9]
    assert sorted(job.args[1] for job in publisher.jobs) == [0, 2, 4, 6, 8]


def _org(engine: Engine) -> uuid.UUID:
    with UnitOfWork(engine, system=True) as uow:
        org = create_organization(uow.conn, "batched")
        uow.commit()
    return org


def _events(engine: Engine, org: uuid.UUID, marker: str) -> int:
    with UnitOfWork(engine, organization_id=org) as uow:
        return int(
            uow.conn.execute(
                sa.select(sa.func.count())
                .select_from(t.event_store)
                .where(t.event_store.c.event_type == marker)
            ).scalar_one()
        )


_INSERT_EVENT = (
    "INSERT INTO event_store (organization_id, aggregate_type, aggregate_id, event_type, payload)"
    " VALUES (%(org)s, 'test', 'x', %(marker)s, '{}')"
)


def test_a_pipeline_commits_with_its_statements_under_the_tenant_scope(settings: object) -> None:
    engine = create_db_engine(get_settings(), pool_size=1, pre_ping=False)
    try:
        org, other = _org(engine), _org(engine)
        with UnitOfWork(engine, organization_id=org) as uow:
            [inserted, seen] = uow.pipeline(
                [
                    (_INSERT_EVENT + " RETURNING event_type", {"org": org, "marker": "pipelined-commit"}),
                    ("SELECT current_setting('app.organization_id') AS org", {}),
                ],
                commit=True,
            )
            with pytest.raises(UnitOfWorkError):
                uow.commit()
        assert inserted[0].event_type == "pipelined-commit" and seen[0].org == str(org)
        assert _events(engine, org, "pipelined-commit") == 1
        with (
            pytest.raises(sa.exc.DBAPIError, match="row-level security"),
            UnitOfWork(engine, organization_id=org) as uow,
        ):
            uow.pipeline([(_INSERT_EVENT, {"org": other, "marker": "pipelined-foreign"})], commit=True)
        assert _events(engine, other, "pipelined-foreign") == 0
    finally:
        engine.dispose()


def test_a_pipeline_rolls_back_unless_committed_and_hands_back_a_transactional_connection(
    settings: object,
) -> None:
    # One pooled connection, so the unit of work after the pipeline gets the very same one.
    engine = create_db_engine(get_settings(), pool_size=1, pre_ping=False)
    try:
        org = _org(engine)
        with UnitOfWork(engine, organization_id=org) as uow:
            uow.pipeline([(_INSERT_EVENT, {"org": org, "marker": "pipelined-rollback"})])
            uow.conn.exec_driver_sql(_INSERT_EVENT, {"org": org, "marker": "pipelined-rollback"})
        assert _events(engine, org, "pipelined-rollback") == 0
        with UnitOfWork(engine, organization_id=org) as uow:
            uow.conn.exec_driver_sql(_INSERT_EVENT, {"org": org, "marker": "after-pipeline"})
            # Not committed: if the pipeline had left the connection in autocommit, this row would stay.
        assert _events(engine, org, "after-pipeline") == 0
    finally:
        engine.dispose()


def _backend(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _server_prepared(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars())


def test_the_driver_prepares_a_connections_frequent_statements_unless_told_not_to(
    settings: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = f"prepared-{uuid.uuid4().hex}"
    for threshold, prepared in (("2", True), ("none", False)):
        monkeypatch.setenv("DATABASE_PREPARE_THRESHOLD", threshold)
        get_settings.cache_clear()
        # One pooled connection: every unit of work below runs on the same server session.
        engine = create_db_engine(get_settings(), pool_size=1, pre_ping=False)
        try:
            org = _org(engine)
            backend = _backend(engine)
            for _ in range(3):
                with UnitOfWork(engine, organization_id=org) as uow:
                    uow.pipeline([(_INSERT_EVENT, {"org": org, "marker": marker})], commit=True)
            # A rollback makes the driver forget (and deallocate) what it prepared: it prepares again.
            with UnitOfWork(engine, organization_id=org) as uow:
                uow.pipeline([(_INSERT_EVENT, {"org": org, "marker": marker})])
            for _ in range(3):
                with UnitOfWork(engine, organization_id=org) as uow:
                    uow.pipeline([(_INSERT_EVENT, {"org": org, "marker": marker})], commit=True)
            statements = _server_prepared(engine)
            assert _backend(engine) == backend
            assert any("event_store" in s for s in statements) is prepared
            assert any("set_config" in s for s in statements) is prepared
        finally:
            engine.dispose()
    get_settings.cache_clear()
    with UnitOfWork(create_db_engine(get_settings(), pool_size=1), organization_id=org) as uow:
        count = uow.conn.exec_driver_sql(
            "SELECT count(*) FROM event_store WHERE event_type = %(m)s", {"m": marker}
        ).scalar_one()
    assert count == 6


def test_generic_plans_last_for_the_unit_of_work_only(engine: Engine) -> None:
    def mode(uow: UnitOfWork) -> str:
        return str(uow.conn.exec_driver_sql("SHOW plan_cache_mode").scalar_one())

    with UnitOfWork(engine, system=True, generic_plans=True) as uow:
        assert mode(uow) == "force_generic_plan"
    with UnitOfWork(engine, system=True) as uow:
        assert mode(uow) == "auto"
