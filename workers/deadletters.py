"""Recording dead letters: a message that failed for good becomes a row operators can work with.

Dramatiq already moves it to `<queue>.XQ`; the row carries what the queue cannot show well: the
error, the traceback, the tenant and the attempt count, so it can be listed, filtered and retried.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import dramatiq
import sqlalchemy as sa
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware
from sqlalchemy.dialects.postgresql import insert

from db.tables import dead_letters
from db.uow import UnitOfWork
from workers import resources

log = logging.getLogger(__name__)


def _organization_of(message: MessageProxy) -> UUID | None:
    value = message.kwargs.get("organization_id") or message.options.get("organization_id")
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


class DeadLetterRecorder(Middleware):
    """Must run its after-hook after Retries' (so: listed before it), since Retries decides failure."""

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None or not message.failed:
            return
        try:
            record(message, exception)
        except Exception:
            # The message is in <queue>.XQ either way; the row is for convenience, not durability.
            log.exception("could not record dead letter %s", message.message_id)


def record(message: MessageProxy, exception: BaseException) -> None:
    options = {k: v for k, v in message.options.items() if k != "traceback"}
    values = {
        "queue": message.queue_name,
        "actor": message.actor_name,
        "message_id": message.message_id,
        "organization_id": _organization_of(message),
        "args": list(message.args),
        "kwargs": dict(message.kwargs),
        "options": options,
        "error": f"{type(exception).__name__}: {exception}"[:4000],
        "traceback": message.options.get("traceback"),
        "attempts": int(message.options.get("retries", 0)) + 1,
    }
    stmt = insert(dead_letters).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[dead_letters.c.message_id],
        set_={
            "error": stmt.excluded.error,
            "traceback": stmt.excluded.traceback,
            "attempts": stmt.excluded.attempts,
            "status": "dead",
            "last_failed_at": sa.func.now(),
        },
    )
    with UnitOfWork(resources.current().engine, system=True) as uow:
        uow.conn.execute(stmt)
        uow.commit()
