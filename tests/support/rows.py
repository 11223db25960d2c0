"""Rows read back under one tenant's scope."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.uow import UnitOfWork


def rows(engine: Engine, org: UUID, sql: str, **params: Any) -> list[Any]:
    with UnitOfWork(engine, organization_id=org) as uow:
        return list(uow.conn.execute(sa.text(sql), params).mappings())
