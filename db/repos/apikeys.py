"""API keys as operators see them: listed (never their secret, only the visible prefix), revoked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.tables import api_keys


@dataclass(frozen=True, slots=True)
class KeyListing:
    id: UUID
    organization_id: UUID
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


def _listing(where: sa.ColumnElement[bool] | None = None) -> sa.Select[tuple[object, ...]]:
    c = api_keys.c
    query = sa.select(
        c.id, c.organization_id, c.name, c.prefix, c.scopes, c.created_at, c.expires_at, c.revoked_at,
        c.last_used_at,
    ).order_by(c.organization_id, c.created_at, c.id)  # fmt: skip
    return query if where is None else query.where(where)


def _rows(conn: Connection, query: sa.Select[tuple[object, ...]]) -> list[KeyListing]:
    return [
        KeyListing(
            r.id,
            r.organization_id,
            r.name,
            r.prefix,
            tuple(r.scopes),
            r.created_at,
            r.expires_at,
            r.revoked_at,
            r.last_used_at,
        )
        for r in conn.execute(query)
    ]


def list_keys(conn: Connection, organization_id: UUID | None = None) -> list[KeyListing]:
    """Every key the scope sees (one organization's, or with the system scope every one)."""
    where = None if organization_id is None else api_keys.c.organization_id == organization_id
    return _rows(conn, _listing(where))


def find_key(conn: Connection, id_or_prefix: str) -> KeyListing | None:
    """By id, or by the visible prefix the key starts with."""
    try:
        where = api_keys.c.id == UUID(id_or_prefix)
    except ValueError:
        where = api_keys.c.prefix == id_or_prefix
    matches = _rows(conn, _listing(where))
    if len(matches) > 1:
        raise ValueError(f"{id_or_prefix!r} names {len(matches)} keys; give the key's id")
    return matches[0] if matches else None


def revoke(conn: Connection, key_id: UUID) -> datetime | None:
    """Revoke now; returns when it was revoked (earlier if it already was), None for no such key."""
    revoked = conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now(), updated_at=sa.func.now())
        .returning(api_keys.c.revoked_at)
    ).scalar_one_or_none()
    if revoked is not None:
        return revoked  # type: ignore[no-any-return]
    return conn.execute(sa.select(api_keys.c.revoked_at).where(api_keys.c.id == key_id)).scalar_one_or_none()
