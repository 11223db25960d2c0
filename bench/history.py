"""The worker benchmarks' database: a fresh one per run, its tenants, and a live tenant's history,
so Postgres plans against tables shaped like production's rather than against empty ones (an
empty table's statistics can make a partial index look as cheap as the primary key, and a plan
made then is kept for the connection's life)."""

from __future__ import annotations

import os
import uuid

import sqlalchemy as sa


def bench_database_url() -> str:
    """A database of this run's own, beside the one `DATABASE_URL` names (created by migrating),
    as the application role; benchmarks run in development mode (its roles and secrets)."""
    from config.settings import url_with_user

    os.environ.setdefault("APP_ENV", "development")
    base = os.environ.get("DATABASE_URL", "postgresql+psycopg://adsapp_app@127.0.0.1:5432/adsapp")
    as_app = url_with_user(base, "adsapp_app", keep_password=False)
    return as_app.rpartition("/")[0] + f"/adsapp_bench_{uuid.uuid4().hex[:8]}"


def create_tenants(engine: sa.Engine, count: int, **number: object) -> list[tuple[uuid.UUID, str]]:
    """`count` organizations with one WhatsApp number each (`bench-pn-<n>`; `number` adds to or
    overrides its columns); returns (organization id, phone number id) per tenant."""
    from db.repos.organizations import add_number, create_organization
    from db.uow import UnitOfWork

    tenants = []
    with UnitOfWork(engine, system=True) as uow:
        for n in range(count):
            org = create_organization(uow.conn, f"bench-{n}")
            columns: dict[str, object] = {
                "phone_number_id": f"bench-pn-{n}",
                "display_phone_number": "1555",
                "waba_id": f"bench-waba-{n}",
                "access_token": "bench-token",
                **number,
            }
            add_number(uow.conn, org, **columns)
            tenants.append((org, str(columns["phone_number_id"])))
        uow.commit()
    return tenants


def seed_history(engine: sa.Engine, per_tenant: int) -> None:
    """Per organization: `per_tenant // 10` contacts with a resolved conversation each, five inbound
    and five sent outbound messages per conversation; then ANALYZE."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                """
                INSERT INTO contacts (organization_id, wa_id, phone, profile_name, last_inbound_at)
                SELECT o.id, 'h' || o.id || '-' || g, 'h' || g, 'History ' || g, now() - interval '2 days'
                FROM organizations o, generate_series(1, :contacts) g
                """
            ),
            {"contacts": max(1, per_tenant // 10)},
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO conversations (organization_id, contact_id, status, last_message_at)
                SELECT c.organization_id, c.id, 'resolved', now() - interval '2 days' FROM contacts c
                """
            )
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO messages (organization_id, conversation_id, contact_id, wamid, direction, type,
                                      text, status, raw, sent_at, created_at)
                SELECT v.organization_id, v.id, v.contact_id,
                       'wamid.history.' || d || '.' || v.id || '.' || g,
                       d, 'text', 'old message ' || g, CASE d WHEN 'inbound' THEN 'received' ELSE 'read' END,
                       '{}'::jsonb, now() - interval '2 days', now() - interval '2 days'
                FROM conversations v, generate_series(1, 5) g, unnest(ARRAY['inbound', 'outbound']) d
                """
            )
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("ANALYZE"))
