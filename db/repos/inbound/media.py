"""Media rows: added with their message, then claimed, stored, noted or held by the fetch job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy.engine import Connection

from db.repos.inbound.runner import run
from domain.inbox import MediaStatus

_STORED = MediaStatus.STORED.value
_FAILED = MediaStatus.FAILED.value

_INSERT = """
INSERT INTO media (organization_id, message_id, media_id, mime_type, sha256)
SELECT %(org)s::uuid, m.message_id, m.media_id, m.mime_type, m.sha256
FROM unnest(%(message_ids)s::uuid[], %(media_ids)s::text[], %(mimes)s::text[], %(sha256s)s::text[])
     AS m(message_id, media_id, mime_type, sha256)
ON CONFLICT (organization_id, media_id) DO NOTHING
RETURNING id, media_id
"""

# Built from `domain.inbox` constants only; no input reaches the text.
_CLAIM = f"""
UPDATE media SET attempts = attempts + 1, updated_at = now()
WHERE media_id = %(media_id)s AND status <> '{_STORED}' AND (retry_after IS NULL OR retry_after <= now())
RETURNING id, sha256, checksum_mismatches
"""  # noqa: S608

_FIND = "SELECT storage_key, status, retry_after, last_error FROM media WHERE media_id = %(media_id)s"

_STORE = f"""
UPDATE media SET status = '{_STORED}', storage_key = %(key)s, mime_type = %(mime)s, sha256 = %(sha)s,
    file_size = %(size)s, last_error = NULL, checksum_mismatches = 0, retry_after = NULL, updated_at = now()
WHERE media_id = %(media_id)s
"""  # noqa: S608

_NOTE = f"""
UPDATE media SET status = %(status)s, last_error = %(error)s,
    checksum_mismatches = checksum_mismatches + %(mismatch)s, updated_at = now()
WHERE media_id = %(media_id)s AND status <> '{_STORED}'
"""  # noqa: S608

_HOLD = f"""
UPDATE media SET status = '{_FAILED}', last_error = %(error)s, checksum_mismatches = 0,
    retry_after = now() + make_interval(secs => %(hold)s), updated_at = now()
WHERE media_id = %(media_id)s AND status <> '{_STORED}'
"""  # noqa: S608


def add(
    conn: Connection,
    organization_id: UUID,
    *,
    message_ids: Sequence[UUID],
    media_ids: Sequence[str],
    mime_types: Sequence[str | None],
    sha256s: Sequence[str | None],
) -> list[Any]:
    """Rows (`id`, `media_id`) of the media rows added now (not those that existed)."""
    return run(
        conn,
        _INSERT,
        {
            "org": str(organization_id),
            "message_ids": [str(i) for i in message_ids],
            "media_ids": list(media_ids),
            "mimes": list(mime_types),
            "sha256s": list(sha256s),
        },
    ).all()


def claim_attempt(conn: Connection, media_id: str) -> Any:
    """Count one more fetch attempt: the row (`id`, `sha256`, `checksum_mismatches`), or None when
    it is stored, held back, or missing."""
    return run(conn, _CLAIM, {"media_id": media_id}).first()


def find(conn: Connection, media_id: str) -> Any:
    """(`storage_key`, `status`, `retry_after`, `last_error`) or None."""
    return run(conn, _FIND, {"media_id": media_id}).first()


def mark_stored(conn: Connection, media_id: str, *, key: str, mime_type: str, sha256: str, size: int) -> None:
    run(conn, _STORE, {"key": key, "mime": mime_type, "sha": sha256, "size": size, "media_id": media_id})


def note_failure(conn: Connection, media_id: str, status: MediaStatus, error: str, *, mismatch: bool) -> None:
    run(
        conn,
        _NOTE,
        {"status": status.value, "error": error, "mismatch": int(mismatch), "media_id": media_id},
    )


def hold(conn: Connection, media_id: str, error: str, hold_seconds: float) -> None:
    """Failed for good for now: no fetch before `hold_seconds` from now."""
    run(conn, _HOLD, {"error": error, "hold": hold_seconds, "media_id": media_id})
