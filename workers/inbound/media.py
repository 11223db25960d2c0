"""Media rows for new media messages, and the follow-up job that fetches each one after commit."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy.engine import Connection

from db.repos.inbound import media as repo
from domain import jobs
from domain.ports import Job
from workers.inbound.messages import StoredMessage


def fetch_job(organization_id: UUID, phone_number_id: str, media_id: str) -> Job:
    return Job(
        queue=jobs.MEDIA_QUEUE,
        actor=jobs.FETCH_MEDIA_ACTOR,
        kwargs={
            "organization_id": str(organization_id),
            "phone_number_id": phone_number_id,
            "media_id": media_id,
        },
    )


def add_media(
    conn: Connection, organization_id: UUID, phone_number_id: str, stored: Sequence[StoredMessage]
) -> list[Job]:
    """A pending media row per new media message; the jobs to enqueue for them."""
    found = [(s, s.message.media) for s in stored if s.message.media is not None]
    if not found:
        return []
    rows = repo.add(
        conn,
        organization_id,
        message_ids=[s.id for s, _ in found],
        media_ids=[m.media_id for _, m in found if m],
        mime_types=[m.mime_type for _, m in found if m],
        sha256s=[m.sha256 for _, m in found if m],
    )
    return [fetch_job(organization_id, phone_number_id, r.media_id) for r in rows]
