"""Routing to a tenant: the one cross-tenant read, through narrow SECURITY DEFINER functions.

A number's access token is stored encrypted; the route hands it out decrypted (`db/token_cipher.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.token_cipher import unseal
from domain.apikeys import ApiKeyRecord


@dataclass(frozen=True, slots=True)
class NumberRoute:
    organization_id: UUID
    whatsapp_number_id: UUID
    access_token: str | None = field(repr=False)  # decrypted; never in a repr or a log line
    mps: int


def resolve_phone_number(conn: Connection, phone_number_id: str) -> NumberRoute | None:
    row = conn.execute(
        sa.text("SELECT * FROM app_resolve_phone_number(:p)"), {"p": phone_number_id}
    ).one_or_none()
    if row is None:
        return None
    return NumberRoute(row.organization_id, row.whatsapp_number_id, unseal(row.access_token), row.mps)


def resolve_api_key(conn: Connection, key_hash: str) -> ApiKeyRecord | None:
    row = conn.execute(sa.text("SELECT * FROM app_resolve_api_key(:h)"), {"h": key_hash}).one_or_none()
    if row is None:
        return None
    return ApiKeyRecord(
        str(row.id), str(row.organization_id), tuple(row.scopes), row.expires_at, row.revoked_at
    )
