"""A small but complete graph of rows for one organization: one row in every tenant table."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db import tables as t


def rows_for(org: UUID) -> Iterator[tuple[sa.Table, dict[str, Any]]]:
    """(table, values) in foreign-key order; ids are fresh each call."""
    tag = uuid.uuid4().hex[:12]
    ids = {
        name: uuid.uuid4()
        for name in ("number", "profile", "contact", "conv", "msg", "job", "key", "letter", "redrive")
    }
    yield (
        t.whatsapp_numbers,
        {
            "id": ids["number"],
            "organization_id": org,
            "phone_number_id": f"pn-{tag}",
            "display_phone_number": "+1 555 0100",
        },
    )
    yield t.profiles, {"id": ids["profile"], "organization_id": org, "email": f"agent-{tag}@example.com"}
    yield t.contacts, {"id": ids["contact"], "organization_id": org, "wa_id": f"wa-{tag}"}
    yield t.conversations, {"id": ids["conv"], "organization_id": org, "contact_id": ids["contact"]}
    yield (
        t.messages,
        {
            "id": ids["msg"],
            "organization_id": org,
            "conversation_id": ids["conv"],
            "contact_id": ids["contact"],
            "wamid": f"wamid.{tag}",
            "direction": "inbound",
            "type": "text",
            "text": "hi",
            "status": "received",
        },
    )
    yield (
        t.message_status_events,
        {
            "organization_id": org,
            "message_id": ids["msg"],
            "wamid": f"wamid.{tag}",
            "status": "read",
            "raw": {},
        },
    )
    yield t.media, {"organization_id": org, "message_id": ids["msg"], "media_id": f"media-{tag}"}
    yield (
        t.message_templates,
        {
            "organization_id": org,
            "waba_id": "waba",
            "name": f"tpl_{tag}",
            "language": "en",
            "status": "APPROVED",
        },
    )
    yield t.bulk_jobs, {"id": ids["job"], "organization_id": org, "kind": "broadcast"}
    yield t.bulk_job_items, {"organization_id": org, "bulk_job_id": ids["job"], "seq": 1, "recipient": "1555"}
    yield t.bulk_job_chunks, {"organization_id": org, "bulk_job_id": ids["job"], "chunk": 0}
    yield (
        t.api_keys,
        {
            "id": ids["key"],
            "organization_id": org,
            "name": "k",
            "prefix": "ads_x",
            "key_hash": f"hash-{tag}",
        },
    )
    yield t.webhook_events, {"organization_id": org, "source": "stripe", "event_id": f"evt_{tag}"}
    yield (
        t.event_store,
        {
            "organization_id": org,
            "aggregate_type": "message",
            "aggregate_id": str(ids["msg"]),
            "event_type": "message.received",
            "payload": {},
        },
    )
    yield (
        t.dead_letters,
        {
            "id": ids["letter"],
            "organization_id": org,
            "queue": "inbound",
            "actor": "a",
            "message_id": f"m-{tag}",
            "args": [],
            "error": "boom",
        },
    )
    yield (
        t.dead_letter_redrives,
        {"id": ids["redrive"], "organization_id": org, "scope_key": str(org), "filter": {}},
    )
    yield (
        t.dead_letter_redrive_items,
        {"redrive_id": ids["redrive"], "dead_letter_id": ids["letter"], "organization_id": org},
    )
    yield t.outbox, {"organization_id": org, "queue": "inbound", "actor": "a", "args": []}
    yield t.usage_counters, {"organization_id": org, "period": "2026-11", "metric": f"messages-{tag}"}


def seed(conn: Connection, org: UUID) -> None:
    for table, values in rows_for(org):
        conn.execute(sa.insert(table).values(**values))
