"""The `/bulk-jobs` request and response models (validated by pydantic, documented in OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field, RootModel, model_validator

from ingress.api.models import Language, TemplateComponent, _Model

MAX_ROWS = 100_000
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
JobStatusName = Literal[
    "pending", "running", "paused", "cancelling", "cancelled", "completed", "completed_with_errors", "failed"
]
KindName = Literal["broadcast", "conversations.update", "contacts.import"]
ItemStatusName = Literal["pending", "submitted", "succeeded", "failed", "skipped", "cancelled"]


class BroadcastTemplate(_Model):
    name: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$")]
    language: Language
    components: Annotated[list[TemplateComponent], Field(max_length=20, default_factory=list)]


class BroadcastRecipient(_Model):
    """A wa_id or a contact id; `components` replace the job's for this recipient. Text parameters
    may say `{{contact.name}}` or `{{contact.wa_id}}`, filled in when the job is planned."""

    wa_id: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    contact_id: UUID | None = None
    components: Annotated[list[TemplateComponent], Field(max_length=20)] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> BroadcastRecipient:
        if (self.wa_id is None) == (self.contact_id is None):
            raise ValueError("give exactly one of wa_id or contact_id")
        return self


class ContactFilterIn(_Model):
    """Contacts to send to (opted-out ones are always left out)."""

    tags: Annotated[list[Tag], Field(max_length=20, default_factory=list)]
    any_tags: Annotated[list[Tag], Field(max_length=20, default_factory=list)]
    last_inbound_before: datetime | None = None
    last_inbound_after: datetime | None = None
    created_before: datetime | None = None
    created_after: datetime | None = None


class BroadcastJob(_Model):
    kind: Literal["broadcast"]
    phone_number_id: (
        Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] | None
    ) = None
    template: BroadcastTemplate
    recipients: Annotated[list[BroadcastRecipient], Field(min_length=1, max_length=MAX_ROWS)] | None = None
    filter: ContactFilterIn | None = None

    @model_validator(mode="after")
    def _one_audience(self) -> BroadcastJob:
        if (self.recipients is None) == (self.filter is None):
            raise ValueError("give exactly one of recipients or filter")
        return self


class ConversationFilterIn(_Model):
    status: Literal["open", "pending", "resolved"] | None = None
    assignee: UUID | Literal["none"] | None = None
    tag: Tag | None = None
    last_message_before: datetime | None = None
    last_message_after: datetime | None = None


class ConversationUpdates(_Model):
    status: Literal["open", "pending", "resolved"] | None = None
    assigned_to: UUID | None = Field(default=None, description="A profile id; null unassigns when given")
    add_tags: Annotated[list[Tag], Field(max_length=20, default_factory=list)]
    remove_tags: Annotated[list[Tag], Field(max_length=20, default_factory=list)]

    @model_validator(mode="after")
    def _something(self) -> ConversationUpdates:
        if not self.model_fields_set - {"add_tags", "remove_tags"} and not (
            self.add_tags or self.remove_tags
        ):
            raise ValueError("give at least one update")
        return self


class ConversationsUpdateJob(_Model):
    kind: Literal["conversations.update"]
    filters: ConversationFilterIn = ConversationFilterIn()
    updates: ConversationUpdates


class ContactsImportJob(_Model):
    """Rows are checked one by one when planned (wa_id digits, lengths, duplicates): a bad row is
    reported as a skipped item with its reason, never fatal to the others."""

    kind: Literal["contacts.import"]
    rows: Annotated[list[dict[str, Any]], Field(min_length=1)]


class CreateBulkJob(
    RootModel[
        Annotated[BroadcastJob | ConversationsUpdateJob | ContactsImportJob, Field(discriminator="kind")]
    ]
):
    """A bulk job: `broadcast`, `conversations.update` or `contacts.import`. An import may also be
    sent as `text/csv` or `multipart/form-data` (a `file` part) with columns wa_id, name, tags
    (separated by `;` or `|`), opt_in."""


class Links(_Model):
    self: str
    items: str


class BulkCounts(_Model):
    total: int
    succeeded: int
    failed: int
    skipped: int
    cancelled: int
    pending: int
    delivered: int | None = Field(description="Broadcasts: messages delivered (status webhooks)")
    read: int | None = Field(description="Broadcasts: messages read (status webhooks)")


class BulkError(_Model):
    code: str
    message: str


class BulkJobView(_Model):
    id: UUID
    kind: KindName
    status: JobStatusName
    total: int
    phone_number_id: str | None
    counts: BulkCounts
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    rate_per_second: float | None = Field(description="Items settled per second over the last minute")
    eta_seconds: float | None
    error: BulkError | None
    links: Links


class ItemError(_Model):
    code: str | None
    title: str | None


class BulkItemView(_Model):
    seq: int
    recipient: str
    status: ItemStatusName
    message_id: UUID | None
    wamid: str | None
    error: ItemError | None
    settled_at: datetime | None


class ListBulkJobsQuery(_Model):
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    cursor: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    kind: KindName | None = None
    status: JobStatusName | None = None


class ListItemsQuery(_Model):
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    cursor: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    status: ItemStatusName | None = None
    error_code: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    format: Literal["json", "csv"] = "json"


class BulkJobPath(_Model):
    job_id: UUID


class ResumeRequest(_Model):
    scope: Literal["pending", "failed"] = "pending"
