"""The audit trail of operator actions: one `event_store` row per action, naming who did it.

The console and `/api/v1` record their actions through the same `record_now`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.repos import apikeys
from db.tables import event_store
from db.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an API key (its id and name), on behalf of its organization or as an operator."""

    key_id: UUID
    key_name: str
    organization_id: UUID
    operator: bool
    via: str  # 'console', 'api', 'cli'


def record(
    conn: Connection,
    actor: Actor,
    action: str,
    *,
    aggregate_type: str,
    aggregate_id: str,
    organization_id: UUID | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append the action, filed under the organization it concerns (the actor's when it spans none)."""
    conn.execute(
        sa.insert(event_store).values(
            organization_id=organization_id or actor.organization_id,
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            event_type=action,
            payload={
                "actor": {
                    "key_id": str(actor.key_id),
                    "key_name": actor.key_name,
                    "organization_id": str(actor.organization_id),
                    "operator": actor.operator,
                    "via": actor.via,
                },
                **(details or {}),
            },
        )
    )


def record_now(
    engine: Engine,
    actor: Actor,
    action: str,
    *,
    aggregate_type: str,
    aggregate_id: str,
    organization_id: UUID | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """`record` in a transaction of its own, for an action whose use case committed already."""
    with UnitOfWork(engine, organization_id=organization_id or actor.organization_id) as uow:
        record(
            uow.conn,
            actor,
            action,
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            organization_id=organization_id,
            details=details,
        )
        uow.commit()


def api_actor(engine: Engine, key_id: UUID, organization_id: UUID, operator: bool) -> Actor:
    """The actor of an `/api/v1` request, named as its key is named (read in the key's own scope)."""
    with UnitOfWork(engine, organization_id=organization_id) as uow:
        found = apikeys.find_key(uow.conn, str(key_id))
    return Actor(key_id, found.name if found else "", organization_id, operator, via="api")
