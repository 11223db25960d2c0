"""Queued sends for the outbound tests, and what became of them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from uuid import UUID

from redis import Redis

from config import get_settings
from devkit.jobs import RecordingPublisher
from devkit.tenants import Tenant
from domain.ports import Job
from ingress.api import ApiOptions, ApiResources
from ingress.api.accept import accept_send
from ingress.api.models import SendMessageRequest
from ingress.api.ratelimit import RateLimiter
from workers.outbound.handler import SendCommand


def queue(tenant: Tenant, body: dict[str, Any] | None = None, *, to: str | None = None) -> SendCommand:
    """A message accepted the way the API accepts it; returns the command of its job."""
    jobs = RecordingPublisher()
    redis = Redis.from_url(get_settings().redis_url)
    resources = ApiResources(
        tenant.engine,
        redis,
        jobs,
        RateLimiter(redis, limit=1, window_seconds=1, namespace="unused"),
        ApiOptions(),
    )
    body = body or {"to": to or tenant.contact(), "type": "text", "text": {"body": "hi"}}
    accept_send(resources, tenant.organization_id, SendMessageRequest.model_validate(body), None)
    redis.close()
    (job,) = jobs.jobs
    return command_of(job)


def command_of(job: Job, final: bool = False) -> SendCommand:
    kw = job.kwargs
    return SendCommand(
        UUID(kw["organization_id"]),
        UUID(kw["message_id"]),
        kw["phone_number_id"],
        kw["to"],
        final_attempt=final,
    )


def final(cmd: SendCommand) -> SendCommand:
    return replace(cmd, final_attempt=True)
