"""Fetching one media object: Graph API metadata, download with the tenant's token, sha256 check,
storage, and the media row updated. Runs after the message committed and never touches it.

Checksums are compared as digests: the webhook's is base64 (as Meta writes it), the media
endpoint's may be hex, and either must match the bytes. Transient failures (network, 5xx,
throttling, a checksum mismatch from a cut download) are noted on the row and raised, so Dramatiq
retries with backoff; the download URL is asked for again on every attempt since Meta's URLs
expire within minutes. A mismatch on the `MAX_CHECKSUM_MISMATCHES`th attempt is not a cut
download: the row is failed with the reason, no fetch is tried for `CHECKSUM_HOLD_SECONDS`, and
the job is dead-lettered. Permanent failures (media gone, auth) are recorded on the row
(`status = 'failed'`) and end there.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from sqlalchemy.engine import Engine

from db.repos.inbound import media as repo
from db.tenants import NumberRoute
from db.uow import UnitOfWork
from domain.errors import PermanentError, TransientError
from domain.inbox import MediaStatus
from domain.media import checksum_problem, sha256_hex
from domain.ports import MediaStorage
from workers.inbound import metrics

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


MAX_CHECKSUM_MISMATCHES = 3
CHECKSUM_HOLD_SECONDS = 3600


class ChecksumMismatch(TransientError):
    pass


class ChecksumMismatchPersists(PermanentError):
    """The bytes never match the checksum Meta gave: kept as failed, dead-lettered, held back."""


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
        row = repo.claim_attempt(uow.conn, media_id)
        if row is None:
            found = repo.find(uow.conn, media_id)
            uow.commit()
            if found is not None and found.status != MediaStatus.STORED:
                metrics.MEDIA_FETCHES.labels("held").inc()
                raise ChecksumMismatchPersists(
                    f"not fetched again before {found.retry_after.isoformat()}: {found.last_error}"
                )
            metrics.MEDIA_FETCHES.labels("already_stored" if found else "missing").inc()
            return FetchResult("already_stored" if found else "missing", found.storage_key if found else None)
        uow.commit()
    expected = row.sha256
    try:
        if route is None or route.organization_id != organization_id or not route.access_token:
            raise PermanentError("no access token for this number")
        info = graph.get_media(media_id, route.access_token)
        data = graph.download(info.url, route.access_token)
        for claimed in (expected, info.sha256):
            problem = checksum_problem(data, claimed) if claimed else None
            if problem is not None:
                raise ChecksumMismatch(problem)
        key = f"{organization_id}/{_SAFE.sub('_', media_id)}.{_EXTENSIONS.get(info.mime_type, 'bin')}"
        storage.put(key, data, info.mime_type)
    except ChecksumMismatch as exc:
        if row.checksum_mismatches + 1 >= MAX_CHECKSUM_MISMATCHES:
            _hold(engine, organization_id, media_id, exc)
            metrics.MEDIA_FETCHES.labels("checksum_failed").inc()
            log.warning("media checksum never matched", extra={"media_id": media_id, "error": str(exc)})
            raise ChecksumMismatchPersists(str(exc)) from exc
        _note(engine, organization_id, media_id, MediaStatus.PENDING, exc, mismatch=True)
        metrics.MEDIA_FETCHES.labels("checksum_mismatch").inc()
        raise
    except TransientError as exc:
        _note(engine, organization_id, media_id, MediaStatus.PENDING, exc)
        metrics.MEDIA_FETCHES.labels("retry").inc()
        raise
    except PermanentError as exc:
        _note(engine, organization_id, media_id, MediaStatus.FAILED, exc)
        metrics.MEDIA_FETCHES.labels("failed").inc()
        log.warning("media fetch failed for good", extra={"media_id": media_id, "error": str(exc)})
        return FetchResult("failed")
    with UnitOfWork(engine, organization_id=organization_id) as uow:
        repo.mark_stored(
            uow.conn, media_id, key=key, mime_type=info.mime_type, sha256=sha256_hex(data), size=len(data)
        )
        uow.commit()
    metrics.MEDIA_FETCHES.labels("stored").inc()
    return FetchResult("stored", key)


def _note(
    engine: Engine,
    organization_id: UUID,
    media_id: str,
    status: MediaStatus,
    exc: BaseException,
    *,
    mismatch: bool = False,
) -> None:
    with UnitOfWork(engine, organization_id=organization_id) as uow:
        repo.note_failure(uow.conn, media_id, status, _reason(exc), mismatch=mismatch)
        uow.commit()


def _hold(engine: Engine, organization_id: UUID, media_id: str, exc: BaseException) -> None:
    """Failed with the reason; no fetch before the hold ends (a redriven job finds it held)."""
    with UnitOfWork(engine, organization_id=organization_id) as uow:
        repo.hold(uow.conn, media_id, _reason(exc), CHECKSUM_HOLD_SECONDS)
        uow.commit()


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]
