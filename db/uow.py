"""The unit of work: one transaction, one tenant scope, one place that commits.

It rolls back unless `commit()` was called. Follow-up jobs are written to the outbox inside the
transaction and published only after the commit, so no job ever refers to a row that might not
exist, and a crash between commit and publish is repaired by the outbox sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from db import outbox
from db.engine import system_engine
from db.rls import BATCH_SETTING, ORG_SETTING, SYSTEM_SETTING
from db.tracing import commit_span
from domain.ports import BatchJobPublisher, Job, JobPublisher

log = logging.getLogger(__name__)


# A driver statement: fixed text with `%(name)s` parameters, and its parameters.
Statement = tuple[str, Mapping[str, Any]]


class UnitOfWorkError(RuntimeError):
    pass


class UnitOfWork:
    """`with UnitOfWork(engine, organization_id=org) as uow: ...; uow.commit()`.

    Pass `organization_id` for tenant work (row-level security scopes every statement to it), or
    `system=True` for maintenance work that must see every tenant, which is rare and explicit, or
    `send_batch=[org, ...]` for the send path's batches: statements over several organizations'
    sends at once, which the send batch policies (`db/rls.py`) hold to the messages, early statuses,
    usage counters and audit trail of those organizations; every other table is closed to it.

    `generic_plans=True` makes Postgres plan the transaction's prepared statements once per
    connection (`plan_cache_mode`), for hot paths whose statements take their rows as arrays or
    JSON: it costs a generic plan of such a statement above the planning it would save, so left to
    itself it plans it again on every execution. Their SQL is written to have good generic plans
    (`= ANY(array)` lookups). `custom_plans=True` is the opposite, for statements whose generic
    plan is far worse than their custom one: the send path's batched UPDATEs joined to their
    arrays' rows took 10-20 times as long per row on their generic plan (psycopg prepares a
    statement after a few runs, and Postgres then switches to the generic plan).

    BEGIN and the scope (`set_config(..., true)`, transaction-local, so a transaction-mode pooler
    keeps it) go out in one round trip with the first statements, through psycopg's pipeline;
    psycopg's own cache prepares the statements a connection runs often (DATABASE_PREPARE_THRESHOLD).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        organization_id: UUID | None = None,
        system: bool = False,
        send_batch: Sequence[UUID] = (),
        publisher: JobPublisher | None = None,
        generic_plans: bool = False,
        custom_plans: bool = False,
    ) -> None:
        if [organization_id is not None, system, bool(send_batch)].count(True) != 1:
            raise UnitOfWorkError(
                "a unit of work is for one organization, a send batch of organizations, or system-wide"
            )
        if generic_plans and custom_plans:
            raise UnitOfWorkError("a unit of work forces generic plans or custom plans, not both")
        self._engine = engine
        self.organization_id = organization_id
        self.system = system
        self.send_batch = tuple(send_batch)
        self._publisher = publisher
        self._plans = "auto"
        if generic_plans or custom_plans:
            self._plans = "force_generic_plan" if generic_plans else "force_custom_plan"
        self._conn: Connection | None = None
        self._begun = False
        self._committed = False
        self._jobs: list[tuple[int, Job]] = []
        self._after_commit: list[Callable[[], None]] = []

    @property
    def conn(self) -> Connection:
        """The transaction's connection, for SQLAlchemy or driver statements; BEGIN and the scope
        travel with whatever runs first (`pipeline`), or go out on first use of this."""
        conn = self._open()
        if not self._begun:
            self._run_pipelined(conn, ())
        return conn

    def _open(self) -> Connection:
        if self._conn is None:
            raise UnitOfWorkError("the unit of work is not open")
        return self._conn

    def __enter__(self) -> Self:
        # Only the maintenance role's sessions can open the system scope (see db/engine.py).
        self._conn = (system_engine(self._engine) if self.system else self._engine).connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            give_back(conn)

    def pipeline(
        self, statements: Sequence[tuple[str, Mapping[str, Any]]], *, commit: bool = False
    ) -> list[list[Any]]:
        """Run driver statements (fixed text, `%(name)s` parameters) in this transaction in one
        round trip over the extended protocol: behind BEGIN and the scope when nothing was sent
        yet, and ahead of COMMIT when `commit` (the unit of work is then committed, as by
        `commit()`). Each statement's rows (named tuples: `row.column`), in order; an error
        leaves nothing of the transaction committed."""
        conn = self._open()
        if self._committed:
            raise UnitOfWorkError("a unit of work commits once")
        rows = self._run_pipelined(conn, statements, commit=commit)
        if commit:
            conn.commit()  # SQLAlchemy's bookkeeping: the server is out of the transaction already
            self._committed = True
            self._after_committed()
        return rows

    def _run_pipelined(
        self, conn: Connection, statements: Sequence[tuple[str, Mapping[str, Any]]], *, commit: bool = False
    ) -> list[list[Any]]:
        dbapi: Any = conn.connection.dbapi_connection
        begin = not self._begun
        if begin:
            conn.begin()  # the driver sends BEGIN itself, queued ahead of the first statement
        cursors: list[psycopg.Cursor[Any]] = []
        try:
            with dbapi.pipeline():
                if begin:
                    dbapi.execute(
                        _SCOPE, _scope_params(self.organization_id, self.system, self.send_batch, self._plans)
                    )
                for sql, params in statements:
                    cursor = dbapi.cursor(row_factory=namedtuple_row)
                    cursor.execute(sql, params)
                    cursors.append(cursor)
                if commit:
                    dbapi.execute("COMMIT")
        except psycopg.Error as exc:
            raise translate_error(conn, exc) from exc
        self._begun = True
        return [cursor.fetchall() if cursor.description is not None else [] for cursor in cursors]

    def enqueue(self, job: Job) -> None:
        """Publish `job` once this unit of work commits (and never if it does not)."""
        if self._publisher is None:
            raise UnitOfWorkError("this unit of work has no job publisher")
        outbox_id = outbox.add(self.conn, self.organization_id, job)
        self._jobs.append((outbox_id, job))

    def enqueue_many(self, jobs: Sequence[Job]) -> None:
        """`enqueue` for many jobs, written to the outbox in one statement."""
        if self._publisher is None:
            raise UnitOfWorkError("this unit of work has no job publisher")
        self._jobs.extend(zip(outbox.add_many(self.conn, self.organization_id, jobs), jobs, strict=True))

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` after a successful commit (best effort: for notifications, not jobs)."""
        self._after_commit.append(callback)

    def switch_tenant(self, organization_id: UUID) -> None:
        """Scope the rest of this tenant transaction to another organization (SET LOCAL, as at
        its start): each statement sees only the organization scoped when it runs. For work
        batched over several organizations that commits together (a send batch's early statuses:
        the batch's own scope ends here)."""
        if self.system:
            raise UnitOfWorkError("a system unit of work has no tenant to switch")
        self.conn.exec_driver_sql(*_switch(organization_id))
        self.organization_id = organization_id

    def commit(self) -> None:
        if self._committed:
            raise UnitOfWorkError("a unit of work commits once")
        conn = self.conn
        with commit_span():
            conn.commit()
        self._committed = True
        self._after_committed()

    def _after_committed(self) -> None:
        self._publish_jobs()
        for callback in self._after_commit:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed")

    def _publish_jobs(self) -> None:
        if not self._jobs:
            return
        assert self._publisher is not None
        published: list[int] = []
        try:
            if isinstance(self._publisher, BatchJobPublisher) and len(self._jobs) > 1:
                errors = self._publisher.publish_many([job for _, job in self._jobs])
                published = [i for (i, _), error in zip(self._jobs, errors, strict=True) if error is None]
                if failed := next((error for error in errors if error is not None), None):
                    raise failed
            else:
                for outbox_id, job in self._jobs:
                    self._publisher.publish(job)
                    published.append(outbox_id)
        finally:
            # Whatever was not published stays in the outbox for the sweep; the caller learns of
            # the failure (the row is committed, so retrying the whole message is idempotent).
            if published:
                with UnitOfWork(
                    self._engine, organization_id=self.organization_id, system=self.system
                ) as cleanup:
                    outbox.remove(cleanup.conn, published)
                    cleanup.commit()


_SCOPE = (
    f"SELECT set_config('{ORG_SETTING}', %(org)s, true), set_config('{SYSTEM_SETTING}', %(system)s, true), "
    f"set_config('{BATCH_SETTING}', %(batch)s, true), set_config('plan_cache_mode', %(plans)s, true)"
)


_SWITCH = f"SELECT set_config('{ORG_SETTING}', %(org)s, true), set_config('{BATCH_SETTING}', '', true)"


def _switch(organization_id: UUID) -> Statement:
    return _SWITCH, {"org": str(organization_id)}


def _scope_params(
    organization_id: UUID | None, system: bool, send_batch: Sequence[UUID], plans: str
) -> dict[str, str]:
    return {
        "org": str(organization_id) if organization_id else "",
        "system": "on" if system else "",
        "batch": ",".join(str(org) for org in send_batch),
        "plans": plans,
    }


def give_back(conn: Connection) -> None:
    """End whatever transaction is left (rolled back) and return the connection to the pool; one
    that cannot be rolled back is discarded instead."""
    try:
        if not conn.invalidated and conn.in_transaction():
            conn.rollback()
    except BaseException:
        # A connection left mid-transaction must never reach the next unit of work through the
        # pool: its SET LOCAL scope and atomicity would be gone.
        conn.invalidate()
        raise
    finally:
        conn.close()


def translate_error(conn: Connection, exc: psycopg.Error) -> sa_exc.StatementError:
    """A driver error met outside SQLAlchemy, as SQLAlchemy would have raised it: a connection the
    error broke is invalidated, so the pool never hands it out again."""
    dbapi: Any = conn.connection.dbapi_connection
    invalidated = bool(dbapi is None or dbapi.closed or dbapi.broken)
    if invalidated:
        conn.invalidate(exc)
    return sa_exc.DBAPIError.instance(None, None, exc, psycopg.Error, connection_invalidated=invalidated)
