"""Applying a chunk of a `conversations.update` or `contacts.import` job: one statement per chunk,
each item succeeding or failing with its reason. (Broadcast chunks are submitted as messages by
`services.bulk_run` instead.)"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy.engine import Connection, RowMapping

from db.repos import bulk as repo
from domain import bulk as rules


def apply_chunk(
    conn: Connection, organization_id: UUID, job: RowMapping, items: Sequence[repo.ChunkItem]
) -> None:
    if job["kind"] == rules.CONVERSATIONS_UPDATE:
        _update_conversations(conn, job, items)
    elif job["kind"] == rules.CONTACTS_IMPORT:
        _import_contacts(conn, organization_id, items)
    else:
        raise ValueError(f"no chunk application for {job['kind']!r}")


def _update_conversations(conn: Connection, job: RowMapping, items: Sequence[repo.ChunkItem]) -> None:
    ids = {UUID(i.recipient): i for i in items}
    changed = repo.update_conversations(conn, list(ids), job["params"].get("updates") or {})
    repo.set_items(
        conn,
        [
            repo.ItemResult(item.id, rules.ITEM_SUCCEEDED)
            if cid in changed
            else repo.ItemResult(
                item.id,
                rules.ITEM_FAILED,
                error_code="conversation_not_updated",
                error_title="The conversation is gone, or reopening it would give its contact two open ones.",
            )
            for cid, item in ids.items()
        ],
    )


def _import_contacts(conn: Connection, organization_id: UUID, items: Sequence[repo.ChunkItem]) -> None:
    rows = [
        repo.ImportedContact(
            wa_id=i.recipient,
            name=i.params.get("name"),
            tags=list(i.params.get("tags") or []),
            opted_out=None if i.params.get("opt_in") is None else not bool(i.params["opt_in"]),
        )
        for i in items
    ]
    written = repo.upsert_contacts(conn, organization_id, rows)
    repo.set_items(
        conn,
        [
            repo.ItemResult(i.id, rules.ITEM_SUCCEEDED)
            if i.recipient in written
            else repo.ItemResult(
                i.id, rules.ITEM_FAILED, error_code="not_written", error_title="Not written."
            )
            for i in items
        ],
    )
