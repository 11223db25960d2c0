"""Dead letters as operators see them: statuses, the tenant scope of a caller, the filter every
list, count and batch action shares, and the scheduled sweep's growing intervals.

Pure: the same filter object is what the HTTP API, the CLI and the console hand to the use cases,
so what an operator previewed with a count is exactly what a batch retry takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final
from uuid import UUID


class Status(StrEnum):
    DEAD = "dead"  # waiting for an operator or the sweep
    RETRYING = "retrying"  # re-enqueue committed, publish not yet confirmed (the sweep finishes it)
    RETRIED = "retried"  # back on its queue; if it dies again, a new letter links to this one
    DISCARDED = "discarded"  # kept for audit, out of the default listing


class RedriveStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"


# Options of the original message that belong to its failed run, not to the job: a retry starts
# with a fresh retry count and no old traceback or ETA.
RUN_OPTIONS: Final = frozenset(
    {"retries", "traceback", "requeue_timestamp", "eta", "outage_retries", "outage_since", "attempts",
     "retry_publish_error", "dead_letter_id", "dead_letter_sweeps"}
)  # fmt: skip
# Options a retry carries: the letter it came from and how many scheduled sweeps its chain has had.
LETTER_OPTION: Final = "dead_letter_id"
SWEEPS_OPTION: Final = "dead_letter_sweeps"


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose letters a caller may see: one organization's, or every tenant's (an operator)."""

    organization_id: UUID | None = None
    operator: bool = False

    def __post_init__(self) -> None:
        if (self.organization_id is None) != self.operator:
            raise ValueError("a scope is either one organization or an operator's")

    @classmethod
    def tenant(cls, organization_id: UUID) -> Scope:
        return cls(organization_id=organization_id)

    @classmethod
    def everyone(cls) -> Scope:
        return cls(operator=True)

    @property
    def key(self) -> str:
        """Names the scope for idempotency keys: one tenant's key never replays another's."""
        return "operator" if self.operator else str(self.organization_id)


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which letters: every given criterion must hold. `status` is `dead` unless another is asked
    for, so a listing, its count and a batch retry or discard of the same filter cover the same
    letters (discarded ones stay for audit, out of sight by default); `ids` restricts to those
    letters; `text` is a case-insensitive substring of the error; `since`/`until` bound the last
    failure (until exclusive)."""

    queue: str | None = None
    actor: str | None = None
    organization_id: UUID | None = None
    error_class: str | None = None
    text: str | None = None
    status: Status = Status.DEAD
    since: datetime | None = None
    until: datetime | None = None
    ids: tuple[UUID, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.until < self.since:
            raise ValueError("until must not be before since")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must carry a time zone")

    def as_json(self) -> dict[str, Any]:
        """The filter as stored with a redrive task (and shown back to the operator)."""
        out: dict[str, Any] = {}
        for name in ("queue", "actor", "error_class", "text"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.organization_id is not None:
            out["organization_id"] = str(self.organization_id)
        out["status"] = self.status.value
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.isoformat()
        if self.ids is not None:
            out["ids"] = sorted(str(i) for i in self.ids)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeadLetterFilter:
        return cls(
            queue=data.get("queue"),
            actor=data.get("actor"),
            organization_id=UUID(data["organization_id"]) if data.get("organization_id") else None,
            error_class=data.get("error_class"),
            text=data.get("text"),
            status=Status(data.get("status") or Status.DEAD),
            since=datetime.fromisoformat(data["since"]) if data.get("since") else None,
            until=datetime.fromisoformat(data["until"]) if data.get("until") else None,
            ids=tuple(UUID(i) for i in data["ids"]) if data.get("ids") is not None else None,
        )


def filter_time(text: str) -> datetime:
    """A `since`/`until` as typed by an operator: ISO 8601, UTC when it names no offset (a console
    datetime-local field never does). `ValueError` if it is not a time."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SweepPolicy:
    """The scheduled redrive of transient letters: first after `first_interval`, each following one
    `factor` times later, at most `max_sweeps` per chain of letters; permanent ones never."""

    first_interval: timedelta = timedelta(minutes=5)
    factor: float = 3.0
    max_interval: timedelta = timedelta(hours=12)
    max_sweeps: int = 5

    def next_interval(self, sweeps_so_far: int) -> timedelta | None:
        """How long after a death to sweep the letter again, or None once its chain is out of sweeps."""
        if sweeps_so_far >= self.max_sweeps:
            return None
        interval = self.first_interval * (self.factor**sweeps_so_far)
        return min(interval, self.max_interval)
