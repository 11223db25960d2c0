"""Dramatiq's Retries, with two holes closed.

1. **A failed retry publish never acks the message.** Retries re-publishes a failed message to the
   delay queue; when that publish raises (a nack, a broken channel), Dramatiq's `emit_after` only
   logs it and the worker acks the original: the job is gone. Here the message is marked failed
   instead, so the worker rejects it into `<queue>.XQ` and the dead-letter recorder (which runs
   after this middleware) writes its row, flagged transient so the sweep redrives it.
2. **An outage does not burn the retry budget.** A failure that is only a dependency being
   unreachable (Postgres, RabbitMQ, Redis; `workers.failures.is_infrastructure`) is retried with
   growing delays (at most `outage_max_backoff` ms apart) without counting against
   `max_retries`, for up to `outage_hold` seconds from the first such failure; only after that does
   it spend its budget and, in the end, become a dead letter. Back off and keep: the message stays
   on the broker (its delay queue) for the whole outage, whatever else is down.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Retries

from workers.failures import error_class, is_infrastructure

log = logging.getLogger(__name__)

OUTAGE_RETRIES = "outage_retries"
OUTAGE_SINCE = "outage_since"
RETRY_PUBLISH_ERROR = "retry_publish_error"
ATTEMPTS = "attempts"


class FleetRetries(Retries):
    def __init__(
        self,
        *,
        outage_max_backoff: int = 60_000,
        outage_hold: float = 4 * 3600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.outage_max_backoff = outage_max_backoff
        self.outage_hold = outage_hold

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            return
        try:
            if not message.failed and self._holds_through_outage(message, exception):
                self._requeue_for_outage(broker, message)
                return
            message.options.pop(OUTAGE_SINCE, None)
            runs_before = int(message.options.get("retries", 0) or 0)
            try:
                super().after_process_message(broker, message, result=result, exception=exception)  # type: ignore[no-untyped-call]
            finally:
                if message.failed or int(message.options.get("retries", 0) or 0) == runs_before:
                    # Retries keeps no traceback for errors it never retries (`throws`): the
                    # dead letter needs this run's own.
                    message.options["traceback"] = "".join(traceback.format_exception(exception, limit=30))[
                        -20_000:
                    ]
                message.options[ATTEMPTS] = runs_before + 1
        except Exception as publish_error:
            # Rejected into .XQ (and recorded) rather than acked and lost.
            message.options[RETRY_PUBLISH_ERROR] = f"{error_class(publish_error)}: {publish_error}"[:1000]
            message.fail()
            log.error(
                "could not re-enqueue a failed message; rejecting it to its dead-letter queue",
                extra={"message_id": message.message_id, "queue": message.queue_name},
                exc_info=publish_error,
            )

    def _holds_through_outage(self, message: MessageProxy, exception: BaseException) -> bool:
        if not is_infrastructure(exception):
            return False
        since = message.options.setdefault(OUTAGE_SINCE, int(time.time() * 1000))
        return (time.time() * 1000 - float(since)) < self.outage_hold * 1000

    def _requeue_for_outage(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        held = int(message.options.get(OUTAGE_RETRIES, 0))
        message.options[OUTAGE_RETRIES] = held + 1
        message.options["traceback"] = traceback.format_exc(limit=30)
        ceiling = min(self.outage_max_backoff, self.min_backoff * 2 ** min(held, 30))
        delay = int(ceiling / 2 + random.uniform(0, ceiling / 2))
        log.warning(
            "a dependency is unreachable; holding the message without spending a retry",
            extra={"message_id": message.message_id, "delay_ms": delay, "held": held + 1},
        )
        broker.enqueue(message, delay=delay)  # type: ignore[arg-type]  # a proxy of one, as Retries passes
