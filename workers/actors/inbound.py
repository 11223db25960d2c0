"""`process_whatsapp_delivery`: one queued Meta webhook delivery into the inbox; `replay_parked_changes`:
the changes parked for a number, handed back once it is added.

An unreadable delivery is permanent (dead-lettered at once, never retried); anything else that
fails is retried with backoff, and the retry skips what earlier attempts committed.
"""

from __future__ import annotations

import time

import dramatiq

from config.logging import request_id_var
from domain import jobs
from domain.errors import InvalidPayload, PermanentError
from workers.inbound import metrics, parking, runtime
from workers.inbound.decode import decode_delivery
from workers.inbound.delivery import process_delivery


@dramatiq.actor(
    actor_name=jobs.WHATSAPP_DELIVERY_ACTOR, queue_name=jobs.INBOUND_QUEUE, throws=(PermanentError,)
)
def process_whatsapp_delivery(
    body: str, received_at: float | None = None, request_id: str | None = None
) -> None:
    token = request_id_var.set(request_id)
    try:
        try:
            delivery = decode_delivery(body)
        except InvalidPayload:
            metrics.INVALID_DELIVERIES.inc()
            raise
        process_delivery(delivery, received_at if received_at is not None else time.time(), runtime.deps())
    finally:
        request_id_var.reset(token)


@dramatiq.actor(actor_name=jobs.REPLAY_PARKED_ACTOR, queue_name=jobs.INBOUND_QUEUE, throws=(PermanentError,))
def replay_parked_changes(phone_number_id: str | None = None, waba_id: str | None = None) -> None:
    """A number (or account) was added: its parked changes go back to the inbound queue."""
    deps = runtime.deps()
    parking.replay(deps.engine, deps.jobs, phone_number_id, waba_id)
