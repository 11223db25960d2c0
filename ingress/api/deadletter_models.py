"""Request and response models of `/dead-letters` and `/dead-letter-redrives`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from domain.deadletters import DeadLetterFilter, Status

_Text = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
StatusName = Literal["dead", "retrying", "retried", "discarded"]
RedriveStatusName = Literal["pending", "running", "finished", "cancelled"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FilterFields(_Model):
    queue: _Text | None = None
    actor: _Text | None = None
    organization_id: UUID | None = Field(
        default=None, description="Narrows to one tenant; a tenant key naming another tenant finds nothing"
    )
    error_class: _Text | None = None
    text: _Text | None = Field(default=None, description="Case-insensitive substring of the error")
    status: StatusName = Field(default="dead", description="Discarded letters show only when asked for")
    since: AwareDatetime | None = Field(default=None, description="Last failure at or after")
    until: AwareDatetime | None = Field(default=None, description="Last failure before")

    @model_validator(mode="after")
    def _valid(self) -> Self:
        self.to_filter()  # the filter's own rules (until not before since) answer as a 422
        return self

    def to_filter(self, ids: tuple[UUID, ...] | None = None) -> DeadLetterFilter:
        return DeadLetterFilter(
            queue=self.queue,
            actor=self.actor,
            organization_id=self.organization_id,
            error_class=self.error_class,
            text=self.text,
            status=Status(self.status),
            since=self.since,
            until=self.until,
            ids=ids,
        )


class ListQuery(FilterFields):
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    cursor: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class BatchRequest(FilterFields):
    ids: Annotated[list[UUID], Field(max_length=1000)] | None = Field(
        default=None, description="Only these letters (still subject to the other criteria)"
    )

    def frozen(self) -> DeadLetterFilter:
        return self.to_filter(tuple(dict.fromkeys(self.ids)) if self.ids is not None else None)


class RedriveRequest(BatchRequest):
    max_per_second: Annotated[float, Field(gt=0, le=100_000)] | None = Field(
        default=None, description="Publishes per second at most; unset: as fast as the broker confirms"
    )


class LetterPath(_Model):
    dead_letter_id: UUID


class RedrivePath(_Model):
    redrive_id: UUID


class Links(_Model):
    self: str


class DeadLetterView(_Model):
    id: UUID
    organization_id: UUID | None
    queue: str
    actor: str
    message_id: str
    error_class: str | None
    error_message: str | None
    error: str
    transient: bool = Field(description="The scheduled sweep retries it (timeouts, outages, throttling)")
    attempts: int
    status: StatusName
    sweeps: int
    first_failed_at: datetime
    last_failed_at: datetime
    retried_at: datetime | None
    discarded_at: datetime | None
    retried_from: UUID | None = Field(description="The letter whose retry died again as this one")
    links: Links


class ChainLinkView(_Model):
    id: UUID
    status: StatusName
    error_class: str | None
    last_failed_at: datetime
    depth: int = Field(description="< 0: came before this letter; > 0: its retries that died again")


class DeadLetterDetailView(DeadLetterView):
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    traceback: str | None
    retry_message_id: str | None
    next_sweep_at: datetime | None
    chain: list[ChainLinkView]


class CountView(_Model):
    count: int


class RetryView(_Model):
    id: UUID
    status: StatusName = Field(
        description="retried once the broker confirmed; retrying: the sweep finishes it"
    )
    message_id: str = Field(description="The id the message was re-enqueued with")


class DiscardView(_Model):
    discarded: int


class RedriveView(_Model):
    id: UUID
    status: RedriveStatusName
    organization_id: UUID | None = Field(description="null: an operator's, across tenants")
    filter: dict[str, Any]
    max_per_second: float | None
    matched: int = Field(description="Letters frozen into the task when it was created")
    moved: int
    failed: int
    skipped: int = Field(description="No longer dead when their turn came (retried or discarded meanwhile)")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: Links
