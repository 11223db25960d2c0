"""Adding a WhatsApp number to an organization, and what that sets off.

Every path that registers a number goes through here, so changes Meta delivered for it before
anyone owned it (parked by the inbound worker) are replayed: the replay job is written to the
outbox in the transaction that adds the number, and published after it commits.
"""

from __future__ import annotations

from uuid import UUID

from db.repos import organizations
from db.uow import UnitOfWork
from domain import jobs
from domain.ports import Job


def replay_parked_job(phone_number_id: str | None, waba_id: str | None) -> Job:
    return Job(
        queue=jobs.INBOUND_QUEUE,
        actor=jobs.REPLAY_PARKED_ACTOR,
        kwargs={"phone_number_id": phone_number_id, "waba_id": waba_id},
    )


def register_number(
    uow: UnitOfWork,
    organization_id: UUID,
    *,
    phone_number_id: str,
    display_phone_number: str,
    waba_id: str | None = None,
    access_token: str | None = None,
    mps: int = 80,
) -> UUID:
    """The new number's id; its parked changes are replayed once `uow` commits."""
    if mps <= 0:
        raise ValueError("mps must be positive")
    number_id = organizations.add_number(
        uow.conn,
        organization_id,
        phone_number_id=phone_number_id,
        display_phone_number=display_phone_number,
        waba_id=waba_id,
        access_token=access_token,
        mps=mps,
    )
    uow.enqueue(replay_parked_job(phone_number_id, waba_id))
    return number_id
