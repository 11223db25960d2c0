"""Fetching one media object: Graph API metadata, download with the tenant's token, sha256 check,
storage, and the media row updated. Runs after the message committed and never touches it.

Transient failures (network, 5xx, throttling, a checksum mismatch from a cut download) are noted on
the row and raised, so Dramatiq retries with backoff; the download URL is asked for again on every
attempt since Meta's URLs expire within minutes. Permanent failures (media gone, auth) are recorded
on the row (`status = 'failed'`) and end there.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from sqlalchemy.engine import Engine

from db.tenants import NumberRoute
from db.uow import UnitOfWork
from domain.errors import PermanentError, TransientError
from domain.ports import MediaStorage
from workers.inbound import metrics
from workers.inbound.params import run

log = logging.getLogger(__name__)

_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "audio/ogg": "ogg",
    "audio/mpeg": "mp3",
    "audio/aac": "aac",
    "audio/mp4": "m4a",
    "video/mp4": "mp4",
    "video/3gpp": "3gp",
    "application/pdf": "pdf",
}
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class MediaInfoLike(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def mime_type(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def file_size(self) -> int: ...


class GraphMedia(Protocol):
    def get_media(self, media_id: str, access_token: str) -> MediaInfoLike: ...

    def download(self, url: str, access_token: str) -> bytes: ...


class ChecksumMismatch(TransientError):
    pass


@dataclass(frozen=True, slots=True)
class FetchResult:
    status: str  # stored | already_stored | failed | missing
    storage_key: str | None = None


def fetch_media(
    *,
    engine: Engine,
    graph: GraphMedia,
    storage: MediaStorage,
    route: NumberRoute | None,
    organization_id: UUID,
    media_id: str,
) -> FetchResult:
    with UnitOfWork(engine, organization_id=organization_id) as uow:
        row = run(
            uow.conn,
            "UPDATE media SET attempts = attempts + 1, updated_at = now() "
            "WHERE media_id = %(media_id)s AND status <> 'stored' RETURNING id, sha256",
            {"media_id": media_id},
        ).first()
        if row is None:
            stored = run(
                uow.conn, "SELECT storage_key FROM media WHERE media_id = %(m)s", {"m": media_id}
            ).first()
            uow.commit()
            metrics.MEDIA_FETCHES.labels("already_stored" if stored else "missing").inc()
            return FetchResult("already_stored" if stored else "missing", stored[0] if stored else None)
        uow.commit()
    expected = row.sha256
    try:
        if route is None or route.organization_id != organization_id or not route.access_token:
            raise PermanentError("no access token for this number")
        info = graph.get_media(media_id, route.access_token)
        data = graph.download(info.url, route.access_token)
        digest = hashlib.sha256(data).hexdigest()
        for claimed in {info.sha256, expected} - {None, ""}:
            if digest != claimed:
                raise ChecksumMismatch(f"sha256 {digest} does not match {claimed}")
        key = f"{organization_id}/{_SAFE.sub('_', media_id)}.{_EXTENSIONS.get(info.mime_type, 'bin')}"
        storage.put(key, data, info.mime_type)
    except TransientError as exc:
        _note(engine, organization_id, media_id, "pending", exc)
        result = "checksum_mismatch" if isinstance(exc, ChecksumMismatch) else "retry"
        metrics.MEDIA_FETCHES.labels(result).inc()
        raise
    except PermanentError as exc:
        _note(engine, organization_id, media_id, "failed", exc)
        metrics.MEDIA_FETCHES.labels("failed").inc()
        log.warning("media fetch failed for good", extra={"media_id": media_id, "error": str(exc)})
        return FetchResult("failed")
    with UnitOfWork(engine, organization_id=organization_id) as uow:
        run(
            uow.conn,
            "UPDATE media SET status = 'stored', storage_key = %(key)s, mime_type = %(mime)s, "
            "sha256 = %(sha)s, file_size = %(size)s, last_error = NULL, updated_at = now() "
            "WHERE media_id = %(media_id)s",
            {"key": key, "mime": info.mime_type, "sha": digest, "size": len(data), "media_id": media_id},
        )
        uow.commit()
    metrics.MEDIA_FETCHES.labels("stored").inc()
    return FetchResult("stored", key)


def _note(engine: Engine, organization_id: UUID, media_id: str, status: str, exc: BaseException) -> None:
    with UnitOfWork(engine, organization_id=organization_id) as uow:
        run(
            uow.conn,
            "UPDATE media SET status = %(status)s, last_error = %(error)s, updated_at = now() "
            "WHERE media_id = %(media_id)s AND status <> 'stored'",
            {"status": status, "error": f"{type(exc).__name__}: {exc}"[:2000], "media_id": media_id},
        )
        uow.commit()
