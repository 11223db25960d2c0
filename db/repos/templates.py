"""Message templates: stored as Meta returns them, one row per (name, language), per organization."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from db.tables import message_templates, whatsapp_numbers
from db.token_cipher import unseal
from domain.templates import StoredTemplate


def accounts(conn: Connection) -> list[tuple[str, str | None]]:
    """(waba_id, an access token, decrypted) of each WhatsApp Business Account the scoped
    organization has."""
    rows = conn.execute(
        sa.select(whatsapp_numbers.c.waba_id, sa.func.max(whatsapp_numbers.c.access_token))
        .where(whatsapp_numbers.c.waba_id.is_not(None))
        .group_by(whatsapp_numbers.c.waba_id)
        .order_by(whatsapp_numbers.c.waba_id)
    )
    return [(str(r[0]), unseal(r[1])) for r in rows]


def all_accounts(conn: Connection) -> list[tuple[UUID, str]]:
    """(organization, waba_id) across every tenant; needs the system scope."""
    rows = conn.execute(
        sa.select(whatsapp_numbers.c.organization_id, whatsapp_numbers.c.waba_id)
        .where(whatsapp_numbers.c.waba_id.is_not(None))
        .distinct()
    )
    return [(UUID(str(r[0])), str(r[1])) for r in rows]


def upsert(
    conn: Connection, organization_id: UUID, waba_id: str, templates: Iterable[Mapping[str, Any]]
) -> int:
    """Store the account's templates as listed now; returns how many rows were written.

    Templates Meta no longer lists are marked DELETED rather than removed, so a send naming one
    gets a clear answer and its history stays readable.
    """
    seen: list[tuple[str, str]] = []
    written = 0
    for template in templates:
        name, language = template.get("name"), template.get("language")
        if not isinstance(name, str) or not isinstance(language, str):
            continue
        stmt = insert(message_templates).values(
            organization_id=organization_id,
            waba_id=waba_id,
            template_id=str(template["id"]) if template.get("id") is not None else None,
            name=name,
            language=language,
            category=template.get("category"),
            status=str(template.get("status") or "UNKNOWN"),
            components=list(template.get("components") or []),
            synced_at=sa.func.now(),
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[
                    message_templates.c.organization_id,
                    message_templates.c.name,
                    message_templates.c.language,
                ],
                set_={
                    "waba_id": stmt.excluded.waba_id,
                    "template_id": stmt.excluded.template_id,
                    "category": stmt.excluded.category,
                    "status": stmt.excluded.status,
                    "components": stmt.excluded.components,
                    "synced_at": stmt.excluded.synced_at,
                    "updated_at": sa.func.now(),
                },
            )
        )
        seen.append((name, language))
        written += 1
    gone = sa.update(message_templates).where(
        message_templates.c.waba_id == waba_id, message_templates.c.status != "DELETED"
    )
    if seen:
        gone = gone.where(sa.tuple_(message_templates.c.name, message_templates.c.language).not_in(seen))
    conn.execute(gone.values(status="DELETED", synced_at=sa.func.now(), updated_at=sa.func.now()))
    return written


def set_status(
    conn: Connection,
    *,
    template_id: str | None,
    name: str | None,
    language: str | None,
    status: str,
) -> int:
    """Apply a status change Meta announced; matched by Meta's template id, else name and language."""
    stmt = sa.update(message_templates).values(status=status, updated_at=sa.func.now())
    if template_id:
        stmt = stmt.where(message_templates.c.template_id == template_id)
    elif name and language:
        stmt = stmt.where(message_templates.c.name == name, message_templates.c.language == language)
    else:
        return 0
    return int(conn.execute(stmt).rowcount)


def named(conn: Connection, name: str) -> list[StoredTemplate]:
    rows = conn.execute(
        sa.select(
            message_templates.c.name,
            message_templates.c.language,
            message_templates.c.status,
            message_templates.c.components,
        ).where(message_templates.c.name == name)
    )
    return [StoredTemplate(r.name, r.language, r.status, list(r.components or [])) for r in rows]
