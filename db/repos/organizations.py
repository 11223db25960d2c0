"""Organizations, their WhatsApp numbers and API keys: what the CLI and the API set up."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.tables import api_keys, organizations, whatsapp_numbers
from db.token_cipher import seal
from domain.apikeys import NewApiKey


def create_organization(conn: Connection, name: str, org_id: UUID | None = None) -> UUID:
    values: dict[str, object] = {"name": name}
    if org_id is not None:
        values["id"] = org_id
    return UUID(
        str(
            conn.execute(sa.insert(organizations).values(**values).returning(organizations.c.id)).scalar_one()
        )
    )


def set_plan(conn: Connection, organization_id: UUID, plan: str) -> None:
    conn.execute(sa.update(organizations).where(organizations.c.id == organization_id).values(plan=plan))


def add_number(
    conn: Connection,
    organization_id: UUID,
    *,
    phone_number_id: str,
    display_phone_number: str,
    waba_id: str | None = None,
    access_token: str | None = None,
    mps: int = 80,
) -> UUID:
    return UUID(
        str(
            conn.execute(
                sa.insert(whatsapp_numbers)
                .values(
                    organization_id=organization_id,
                    phone_number_id=phone_number_id,
                    display_phone_number=display_phone_number,
                    waba_id=waba_id,
                    access_token=seal(access_token),  # encrypted at rest
                    mps=mps,
                )
                .returning(whatsapp_numbers.c.id)
            ).scalar_one()
        )
    )


def add_api_key(
    conn: Connection,
    organization_id: UUID,
    name: str,
    key: NewApiKey,
    scopes: tuple[str, ...],
    *,
    expires_at: datetime | None = None,
    operator: bool = False,
) -> UUID:
    return UUID(
        str(
            conn.execute(
                sa.insert(api_keys)
                .values(
                    organization_id=organization_id,
                    name=name,
                    prefix=key.prefix,
                    key_hash=key.key_hash,
                    scopes=list(scopes),
                    expires_at=expires_at,
                    operator=operator,
                )
                .returning(api_keys.c.id)
            ).scalar_one()
        )
    )
