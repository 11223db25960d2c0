"""Ports: what the domain and handlers need from the outside, as Protocols.

Adapters in `db/` and `workers/` implement them; unit tests pass fakes of their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Job:
    """A follow-up job: which actor, on which queue, with which arguments."""

    queue: str
    actor: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    delay_ms: int | None = None


class JobPublisher(Protocol):
    """Puts jobs on the broker durably (returns only once the broker has them)."""

    def publish(self, job: Job) -> None: ...


class MediaStorage(Protocol):
    """Where downloaded media bytes live; returns the key to find them again."""

    def put(self, key: str, data: bytes, mime_type: str | None) -> str: ...

    def get(self, key: str) -> bytes: ...
