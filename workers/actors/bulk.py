"""`run_bulk_chunk` and `settle_bulk_chunk`: a bulk job's chunks, on the `bulk` queue."""

from __future__ import annotations

from uuid import UUID

import dramatiq

from domain import jobs
from services import bulk_run
from workers.bulk import metrics, runtime


@dramatiq.actor(actor_name=jobs.RUN_BULK_CHUNK_ACTOR, queue_name=jobs.BULK_QUEUE, max_retries=10)
def run_bulk_chunk(organization_id: str, job_id: str, chunk: int) -> None:
    metrics.observe(bulk_run.run_chunk(runtime.ports(), UUID(organization_id), UUID(job_id), int(chunk)))


@dramatiq.actor(actor_name=jobs.SETTLE_BULK_CHUNK_ACTOR, queue_name=jobs.BULK_QUEUE, max_retries=10)
def settle_bulk_chunk(organization_id: str, job_id: str, chunk: int) -> None:
    metrics.observe(bulk_run.settle_chunk(runtime.ports(), UUID(organization_id), UUID(job_id), int(chunk)))
