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

from db import outbox, prepared
from db.engine import system_engine
from db.prepared import Prepared
from db.rls import ORG_SETTING, SYSTEM_SETTING
from db.tracing import commit_span
from domain.ports import Job, JobPublisher

log = logging.getLogger(__name__)


class UnitOfWorkError(RuntimeError):
    pass


class _GivesBack:
    """Leaving the `with` block gives the connection back (see `give_back`), committed or not."""

    _conn: Connection | None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            give_back(conn)


class UnitOfWork(_GivesBack):
    """`with UnitOfWork(engine, organization_id=org) as uow: ...; uow.commit()`.

    Pass `organization_id` for tenant work (row-level security scopes every statement to it), or
    `system=True` for maintenance work that must see every tenant, which is rare and explicit.

    `generic_plans=True` makes Postgres plan the transaction's prepared statements once per
    connection (`plan_cache_mode`), for hot paths whose statements take their rows as arrays or
    JSON: it costs a generic plan of such a statement above the planning it would save, so left to
    itself it plans it again on every execution. Their SQL is written to have good generic plans
    (`= ANY(array)` lookups).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        organization_id: UUID | None = None,
        system: bool = False,
        publisher: JobPublisher | None = None,
        generic_plans: bool = False,
    ) -> None:
        if (organization_id is None) == (not system):
            raise UnitOfWorkError("a unit of work is either for one organization or system-wide")
        self._engine = engine
        self.organization_id = organization_id
        self.system = system
        self._publisher = publisher
        self._generic_plans = generic_plans
        self._conn: Connection | None = None
        self._committed = False
        self._jobs: list[tuple[int, Job]] = []
        self._after_commit: list[Callable[[], None]] = []

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise UnitOfWorkError("the unit of work is not open")
        return self._conn

    def __enter__(self) -> Self:
        # Only the maintenance role's sessions can open the system scope (see db/engine.py).
        conn = (system_engine(self._engine) if self.system else self._engine).connect()
        try:
            begin_scoped(conn, self.organization_id, self.system, self._generic_plans)
        except BaseException:
            # __exit__ does not run when __enter__ fails: give the connection back here.
            conn.invalidate()
            conn.close()
            raise
        self._conn = conn
        return self

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
        batched over several organizations that may commit together (the send path's claims)."""
        if self.system:
            raise UnitOfWorkError("a system unit of work has no tenant to switch")
        self.conn.exec_driver_sql(
            f"SELECT set_config('{ORG_SETTING}', %(org)s, true)", {"org": str(organization_id)}
        )
        self.organization_id = organization_id

    def commit(self) -> None:
        if self._committed:
            raise UnitOfWorkError("a unit of work commits once")
        with commit_span():
            self.conn.commit()
        self._committed = True
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


# BEGIN and the scope as one plain query, the scope a prepared statement; the parameter names stay
# clear of those of statements sent in the same query (`BatchedWork`).
_SCOPE = Prepared.of(
    "scope",
    f"SELECT set_config('{ORG_SETTING}', %(_scope_org)s, true) AS org, "
    f"set_config('{SYSTEM_SETTING}', %(_scope_system)s, true) AS system, "
    "set_config('plan_cache_mode', %(_scope_plans)s, true) AS plans",
    _scope_org="text",
    _scope_system="text",
    _scope_plans="text",
)
_BEGIN_SCOPED = f"BEGIN; {_SCOPE.execute_text}"


def _scope_params(organization_id: UUID | None, system: bool, generic_plans: bool = False) -> dict[str, str]:
    return {
        "_scope_org": str(organization_id) if organization_id else "",
        "_scope_system": "on" if system else "",
        "_scope_plans": "force_generic_plan" if generic_plans else "auto",
    }


def begin_scoped(
    conn: Connection, organization_id: UUID | None, system: bool, generic_plans: bool = False
) -> None:
    """Open a transaction with the tenant (or system) scope SET LOCAL, in one round trip.

    BEGIN travels with the scope as one plain query (the driver in autocommit mode, so it adds no
    BEGIN of its own): every unit of work pays this, round trips are what a busy 2-core box runs
    short of, and one plain query costs less CPU than the driver's pipeline for two statements.
    SQLAlchemy's commit and rollback still end the transaction (the driver sends them whenever the
    server is in one); `give_back` restores the driver's mode before the pool sees the connection.
    """
    dbapi: Any = conn.connection.dbapi_connection
    dbapi.autocommit = True
    try:
        cursor = psycopg.ClientCursor(dbapi)
        params = _scope_params(organization_id, system, generic_plans)
        prepared.execute(conn, cursor, _BEGIN_SCOPED, params, [_SCOPE], opens_transaction=True)
    except psycopg.Error as exc:
        raise translate_error(conn, exc) from exc
    conn.begin()


def give_back(conn: Connection) -> None:
    """End whatever transaction is left (rolled back), restore the driver's transaction mode and
    return the connection to the pool; one that cannot be restored is discarded instead."""
    try:
        if not conn.invalidated:
            if conn.in_transaction():
                conn.rollback()
            dbapi: Any = conn.connection.dbapi_connection
            dbapi.rollback()  # nothing to do unless a transaction is still open
            dbapi.autocommit = False
    except BaseException:
        # A connection left in autocommit (or mid-transaction) must never reach the next unit of
        # work through the pool: its SET LOCAL scope and atomicity would be gone.
        conn.invalidate()
        raise
    finally:
        conn.close()


class BatchedWork(_GivesBack):
    """A tenant transaction for the hottest paths, in as few and as cheap round trips as its logic
    allows.

    `send(sql, params)` sends `sql` (one statement or several) as one plain query with its
    parameters bound client-side; the first call also carries BEGIN and the tenant scope, and
    `send(..., commit=True)` the COMMIT, so a transaction known up front is one round trip and one
    message. (Per-statement protocol messages and psycopg's pipeline machinery cost more CPU, on
    both sides, than the statements themselves at a thousand transactions a second.) `conn` is the
    same connection for code written against SQLAlchemy, and `commit()` commits whatever was done
    through either. It rolls back unless committed; database errors leave as SQLAlchemy's.
    """

    def __init__(self, engine: Engine, organization_id: UUID) -> None:
        self._engine = engine
        self._scope = _scope_params(organization_id, system=False)
        self._conn: Connection | None = None
        self._dbapi: Any = None
        self._begun = False
        self._committed = False

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise UnitOfWorkError("the unit of work is not open")
        if not self._begun:
            self.send("SELECT 1", {})
        return self._conn

    def __enter__(self) -> Self:
        self._conn = self._engine.connect()
        self._dbapi = self._conn.connection.dbapi_connection
        # Transaction control is ours: BEGIN travels with the first statements instead of being a
        # round trip of its own.
        self._dbapi.autocommit = True
        return self

    def send(
        self, sql: str | Sequence[Prepared], params: Mapping[str, Any], *, commit: bool = False
    ) -> psycopg.Cursor[Any]:
        """Run `sql` in this transaction (and COMMIT when `commit`), in one round trip; the cursor
        is at the result of the first statement of `sql` (`nextset()` for the following ones),
        with rows readable by column name. Prepared statements are executed by name (prepared
        first if this connection has not met them yet), so Postgres neither parses nor plans
        them again."""
        if self._conn is None:
            raise UnitOfWorkError("the unit of work is not open")
        if self._committed:
            raise UnitOfWorkError("a unit of work commits once")
        skip = 0 if self._begun else 2
        statements = sql if isinstance(sql, str) else "; ".join(s.execute_text for s in sql)
        text = statements if self._begun else f"{_BEGIN_SCOPED}; {statements}"
        if commit:
            text += "; COMMIT"
        cursor = psycopg.ClientCursor(self._dbapi, row_factory=namedtuple_row)
        try:
            prepared.execute(
                self._conn,
                cursor,
                text,
                {**params, **self._scope} if not self._begun else params,
                [_SCOPE] if isinstance(sql, str) else [_SCOPE, *sql],
                opens_transaction=not self._begun,
            )
        except psycopg.Error as exc:
            raise self._translate(exc) from exc
        self._begun = True
        self._committed = commit
        for _ in range(skip):
            cursor.nextset()
        return cursor

    def commit(self) -> None:
        if self._committed:
            raise UnitOfWorkError("a unit of work commits once")
        assert self._conn is not None
        try:
            with commit_span():
                if self._conn.in_transaction():  # something went through SQLAlchemy: let it know
                    self._conn.commit()
                else:
                    self._dbapi.commit()
        except psycopg.Error as exc:
            raise self._translate(exc) from exc
        self._committed = True

    def _translate(self, exc: psycopg.Error) -> sa_exc.StatementError:
        assert self._conn is not None
        return translate_error(self._conn, exc)


def translate_error(conn: Connection, exc: psycopg.Error) -> sa_exc.StatementError:
    """A driver error met outside SQLAlchemy, as SQLAlchemy would have raised it: a connection the
    error broke is invalidated, so the pool never hands it out again."""
    dbapi: Any = conn.connection.dbapi_connection
    invalidated = bool(dbapi is None or dbapi.closed or dbapi.broken)
    if invalidated:
        conn.invalidate(exc)
    return sa_exc.DBAPIError.instance(None, None, exc, psycopg.Error, connection_invalidated=invalidated)
