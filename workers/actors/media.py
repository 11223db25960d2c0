"""`fetch_media`: download one media object of a stored message (enqueued after its commit)."""

from __future__ import annotations

from uuid import UUID

import dramatiq

from domain import jobs
from domain.errors import PermanentError
from workers.inbound import runtime
from workers.inbound.media_fetch import fetch_media as fetch


@dramatiq.actor(actor_name=jobs.FETCH_MEDIA_ACTOR, queue_name=jobs.MEDIA_QUEUE, throws=(PermanentError,))
def fetch_media(organization_id: str, phone_number_id: str, media_id: str) -> None:
    deps = runtime.deps()
    fetch(
        engine=deps.engine,
        graph=runtime.graph(),
        storage=runtime.storage(),
        route=deps.routes.number(phone_number_id),
        organization_id=UUID(organization_id),
        media_id=media_id,
    )
