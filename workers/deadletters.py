"""Recording dead letters: a message that failed for good becomes a row operators can work with.

Dramatiq moves it to `<queue>.XQ`; the row keeps the original message whole (queue, actor, args,
kwargs, options, message id) with what the queue cannot show well: the tenant, the error class
and message, the traceback, attempts and times, whether the sweep may retry it, and the letter it
came from when it was itself a retry. `.XQ` is the fallback should the row not be writable.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name
from dramatiq.middleware import Middleware

from config import Settings
from db.repos import deadletters as repo
from db.uow import UnitOfWork
from domain.deadletters import LETTER_OPTION, SWEEPS_OPTION, SweepPolicy
from services.deadletter_metrics import DEAD_LETTERS
from workers import resources
from workers.failures import error_class, is_transient
from workers.retries import ATTEMPTS, RETRY_PUBLISH_ERROR

log = logging.getLogger(__name__)


def _uuid(value: object) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


def _organization_of(message: MessageProxy) -> UUID | None:
    kwargs = message.kwargs or {}
    found = _uuid(kwargs.get("organization_id") or message.options.get("organization_id"))
    if found is None and message.args:
        # Actors that take the tenant first (send_message) pass it positionally.
        found = _uuid(message.args[0]) if isinstance(message.args[0], str) else None
    return found


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
            # The message is in <queue>.XQ either way: the row is for operators' convenience.
            log.exception("could not record dead letter %s", message.message_id)


def letter_values(message: MessageProxy, exception: BaseException, policy: SweepPolicy) -> dict[str, Any]:
    publish_error = message.options.get(RETRY_PUBLISH_ERROR)
    transient = publish_error is not None or is_transient(exception)
    sweeps = int(message.options.get(SWEEPS_OPTION, 0) or 0)
    interval = policy.next_interval(sweeps) if transient else None
    error_message = str(exception)
    if publish_error is not None:
        error_message = f"{error_message} (and its retry could not be enqueued: {publish_error})"
    options = {k: v for k, v in message.options.items() if k != "traceback"}
    return {
        "queue": q_name(message.queue_name),
        "actor": message.actor_name,
        "message_id": message.message_id,
        "organization_id": _organization_of(message),
        "args": list(message.args),
        "kwargs": dict(message.kwargs or {}),
        "options": options,
        "error": f"{error_class(exception)}: {error_message}"[:4000],
        "error_class": error_class(exception),
        "error_message": error_message[:4000],
        "transient": transient,
        "traceback": message.options.get("traceback"),
        "attempts": int(message.options.get(ATTEMPTS) or int(message.options.get("retries", 0) or 0) + 1),
        "sweeps": sweeps,
        "next_sweep_at": datetime.now(UTC) + interval if interval is not None else None,
    }


def record(message: MessageProxy, exception: BaseException) -> None:
    res = resources.current()
    values = letter_values(message, exception, sweep_policy(res.settings))
    with UnitOfWork(res.engine, system=True) as uow:
        repo.record(uow.conn, values, _uuid(message.options.get(LETTER_OPTION)))
        uow.commit()
    DEAD_LETTERS.labels(values["queue"], values["actor"], values["error_class"]).inc()


def sweep_policy(settings: Settings) -> SweepPolicy:
    return SweepPolicy(
        first_interval=timedelta(seconds=settings.dead_letter_sweep_first_seconds),
        factor=settings.dead_letter_sweep_factor,
        max_sweeps=settings.dead_letter_sweep_max,
    )
