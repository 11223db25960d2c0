"""The caller's tenant scope: one organization, or every organization for an operator.

A tenant's reads run under row-level security for its own organization; only an operator's run
system-wide. Passing `None` is the one way to ask for every tenant, so a forgotten scope can never
widen a tenant's view.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.engine import Engine

from db.uow import UnitOfWork


def unit_of_work(engine: Engine, organization_id: UUID | None) -> UnitOfWork:
    """A unit of work for one organization, or system-wide when `organization_id` is None."""
    if organization_id is None:
        return UnitOfWork(engine, system=True)
    return UnitOfWork(engine, organization_id=organization_id)
