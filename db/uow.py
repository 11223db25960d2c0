"""The unit of work: one transaction, one tenant scope, one place that commits.

It rolls back unless `commit()` was called. Follow-up jobs are written to the outbox inside the
transaction and published only after the commit, so no job ever refers to a row that might not
exist, and a crash between commit and publish is repaired by the outbox sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self
from uuid import UUID

from sqlalchemy.engine import Connection, Engine

from db import outbox
from db.rls import ORG_SETTING, SYSTEM_SETTING
from domain.ports import Job, JobPublisher

log = logging.getLogger(__name__)


class UnitOfWorkError(RuntimeError):
    pass


class UnitOfWork:
    """`with UnitOfWork(engine, organization_id=org) as uow: ...; uow.commit()`.

    Pass `organization_id` for tenant work (row-level security scopes every statement to it), or
    `system=True` for maintenance work that must see every tenant, which is rare and explicit.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        organization_id: UUID | None = None,
        system: bool = False,
        publisher: JobPublisher | None = None,
    ) -> None:
        if (organization_id is None) == (not system):
            raise UnitOfWorkError("a unit of work is either for one organization or system-wide")
        self._engine = engine
        self.organization_id = organization_id
        self.system = system
        self._publisher = publisher
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
        self._conn = self._engine.connect()
        self._conn.begin()
        set_scope(self._conn, self.organization_id, self.system)
        return self

    def enqueue(self, job: Job) -> None:
        """Publish `job` once this unit of work commits (and never if it does not)."""
        if self._publisher is None:
            raise UnitOfWorkError("this unit of work has no job publisher")
        outbox_id = outbox.add(self.conn, self.organization_id, job)
        self._jobs.append((outbox_id, job))

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` after a successful commit (best effort: for notifications, not jobs)."""
        self._after_commit.append(callback)

    def commit(self) -> None:
        if self._committed:
            raise UnitOfWorkError("a unit of work commits once")
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
                with self._engine.connect() as conn, conn.begin():
                    set_scope(conn, self.organization_id, self.system)
                    outbox.remove(conn, published)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if not self._committed:
                conn.rollback()
        finally:
            conn.close()


_SCOPE_SQL = "SELECT set_config(%s, %s, true), set_config(%s, %s, true)"


def set_scope(conn: Connection, organization_id: UUID | None, system: bool) -> None:
    """SET LOCAL the tenant (or system) scope for the current transaction.

    Sent in a psycopg pipeline so the driver's implicit BEGIN and the scope travel in one round
    trip: every unit of work pays this, and round trips are what a busy 2-core box runs short of.
    """
    params = (
        ORG_SETTING,
        str(organization_id) if organization_id else "",
        SYSTEM_SETTING,
        "on" if system else "",
    )
    dbapi: Any = conn.connection.dbapi_connection
    with dbapi.pipeline():
        dbapi.execute(_SCOPE_SQL, params)
