"""Tenants for the tests, the benchmarks and the soak: an organization with numbers, API keys, contacts and templates."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.repos.organizations import add_api_key, add_number, create_organization
from db.repos.templates import upsert
from db.tables import api_keys, contacts, messages
from db.uow import UnitOfWork
from domain.apikeys import generate_key

ALL_SCOPES = ("messages:write", "messages:read")


@dataclass
class Tenant:
    engine: Engine
    organization_id: UUID
    numbers: list[str]
    waba_id: str
    tag: str
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def number(self) -> str:
        return self.numbers[0]

    @property
    def phone_number_id(self) -> str:
        return self.numbers[0]

    def api_key(self, scopes: tuple[str, ...] = ALL_SCOPES, *, expires_at: datetime | None = None) -> str:
        key = generate_key()
        with UnitOfWork(self.engine, organization_id=self.organization_id) as uow:
            key_id = add_api_key(uow.conn, self.organization_id, f"key-{len(self.keys)}", key, scopes)
            if expires_at is not None:
                uow.conn.execute(
                    sa.update(api_keys).where(api_keys.c.id == key_id).values(expires_at=expires_at)
                )
            uow.commit()
        self.keys[key.plaintext] = str(key_id)
        return key.plaintext

    def revoke(self, plaintext: str) -> None:
        with UnitOfWork(self.engine, organization_id=self.organization_id) as uow:
            uow.conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.id == UUID(self.keys[plaintext]))
                .values(revoked_at=datetime.now(UTC) - timedelta(seconds=1))
            )
            uow.commit()

    def contact(self, wa_id: str | None = None, *, wrote_ago: timedelta | None = timedelta(minutes=5),
                opted_out: bool = False) -> str:  # fmt: skip
        """A customer; `wrote_ago` None means they never wrote (outside the window)."""
        wa_id = wa_id or recipient()
        last = datetime.now(UTC) - wrote_ago if wrote_ago is not None else None
        with UnitOfWork(self.engine, organization_id=self.organization_id) as uow:
            uow.conn.execute(
                sa.insert(contacts).values(
                    organization_id=self.organization_id, wa_id=wa_id, phone=wa_id, last_inbound_at=last,
                    opted_out=opted_out,
                )
            )  # fmt: skip
            uow.commit()
        return wa_id

    def templates(self, templates: list[dict[str, Any]]) -> None:
        with UnitOfWork(self.engine, organization_id=self.organization_id) as uow:
            upsert(uow.conn, self.organization_id, self.waba_id, templates)
            uow.commit()

    def message(self, message_id: UUID | str) -> dict[str, Any]:
        with UnitOfWork(self.engine, organization_id=self.organization_id) as uow:
            row = (
                uow.conn.execute(sa.select(messages).where(messages.c.id == UUID(str(message_id))))
                .mappings()
                .one()
            )
            return dict(row)

    def execute(self, statement: Any) -> None:
        with UnitOfWork(self.engine, organization_id=self.organization_id) as uow:
            uow.conn.execute(statement)
            uow.commit()


def recipient() -> str:
    """A fresh wa_id, so the pair-rate bucket of one test never slows another."""
    return f"1555{uuid.uuid4().int % 10**9:09d}"


def make_tenant(
    engine: Engine, *, numbers: int = 1, mps: int = 80, token: str | None = "tenant-token"
) -> Tenant:
    tag = uuid.uuid4().hex[:10]
    waba = f"waba-{tag}"
    with UnitOfWork(engine, system=True) as uow:
        org = create_organization(uow.conn, f"org-{tag}")
        ids = []
        for i in range(numbers):
            pnid = f"pn-{tag}-{i}"
            add_number(
                uow.conn, org, phone_number_id=pnid, display_phone_number=f"1555000{i:04d}", waba_id=waba,
                access_token=token, mps=mps,
            )  # fmt: skip
            ids.append(pnid)
        uow.commit()
    return Tenant(engine, org, ids, waba, tag)


TEMPLATE = {
    "name": "order_update",
    "language": "en_US",
    "status": "APPROVED",
    "category": "UTILITY",
    "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
        {"type": "BODY", "text": "Hi {{1}}, your order {{2}} ships today."},
        {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://x.test/t/{{1}}"}]},
    ],
}


def template_send(to: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "to": to,
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "en_US"},
            "components": [
                {"type": "header", "parameters": [{"type": "text", "text": "A1"}]},
                {
                    "type": "body",
                    "parameters": [{"type": "text", "text": "Ann"}, {"type": "text", "text": "A1"}],
                },
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{"type": "text", "text": "A1"}],
                },
            ],
        },
    }
    body.update(overrides)
    return body
