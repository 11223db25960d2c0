"""Ports: what the domain and handlers need from the outside, as Protocols.

Adapters in `db/` and `workers/` implement them; unit tests pass fakes of their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Job:
    """A follow-up job: which actor, on which queue, with which arguments.

    `options` and `message_id` are for re-enqueueing a message as it was (a dead letter's retry
    keeps its options and publishes under an id fixed before the publish, so a republish after a
    crash is the same message); new jobs leave them empty.
    """

    queue: str
    actor: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    delay_ms: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    message_id: str | None = None


class JobPublisher(Protocol):
    """Puts jobs on the broker durably (returns only once the broker has them)."""

    def publish(self, job: Job) -> None: ...


@runtime_checkable
class BatchJobPublisher(JobPublisher, Protocol):
    """A publisher that puts many jobs on the broker at once, each as durably as `publish`."""

    def publish_many(self, jobs: Sequence[Job]) -> list[BaseException | None]:
        """Every job attempted; per job, None once the broker has it, or why it is not there."""
        ...


class RealtimePublisher(Protocol):
    """Best-effort fan-out to live inboxes (Redis pub/sub); losing one is acceptable."""

    def publish(self, channel: str, payload: Mapping[str, Any]) -> None: ...


class MediaStorage(Protocol):
    """Where downloaded media bytes live; returns the key to find them again."""

    def put(self, key: str, data: bytes, mime_type: str | None) -> str: ...

    def get(self, key: str) -> bytes: ...
