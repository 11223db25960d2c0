"""Request and response models of `/api/v1/messages`; the OpenAPI document is generated from them.

The send body follows the Cloud API's own shape (`{"to", "type", "<type>": {...}}`) so a client
can reuse what it would send to Meta; `phone_number_id` picks the sending number when the tenant
has several. `biz_opaque_callback_data` is ours (it carries the message id), so it is refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from domain.outbound import AMBIGUOUS, FAILED, QUEUED, SENDING, SENT


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class _NoNul(BaseModel):
    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        # PostgreSQL text and jsonb cannot hold U+0000: refuse it here, not at the insert.
        if _has_nul(data):
            raise ValueError("strings must not contain NUL characters")
        return data


class _Model(_NoNul):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Open(_NoNul):
    """Objects Meta defines at length (template parameters, interactive headers): the fields we
    check are typed, the rest passes through to Meta as given."""

    model_config = ConfigDict(extra="allow", frozen=True)


# --- content objects ----------------------------------------------------------------------------


class TextContent(_Model):
    body: Annotated[str, Field(min_length=1, max_length=4096)]
    preview_url: bool = False


class Media(_Model):
    """By `id` (uploaded to Meta) or by `link` (an https URL Meta fetches): exactly one."""

    id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")] | None = None
    link: Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^https?://\S+$")] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Media:
        if (self.id is None) == (self.link is None):
            raise ValueError("give exactly one of id or link")
        return self


class CaptionedMedia(Media):
    caption: Annotated[str, Field(min_length=1, max_length=1024)] | None = None


class DocumentMedia(CaptionedMedia):
    filename: Annotated[str, Field(min_length=1, max_length=240)] | None = None


class Language(_Model):
    code: Annotated[
        str, Field(min_length=1, max_length=16, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")
    ]
    policy: Literal["deterministic"] | None = None


class TemplateParameter(_Open):
    type: Literal[
        "text", "currency", "date_time", "image", "document", "video", "location", "payload", "coupon_code",
        "action",
    ]  # fmt: skip


class TemplateComponent(_Model):
    type: Literal["header", "body", "button"]
    sub_type: Literal["quick_reply", "url", "copy_code", "flow", "catalog"] | None = None
    index: (
        Annotated[int, Field(ge=0, le=9)]
        | Annotated[str, Field(min_length=1, max_length=1, pattern=r"^[0-9]$")]
        | None
    ) = None
    parameters: Annotated[list[TemplateParameter], Field(max_length=100)] = []

    @model_validator(mode="after")
    def _button_needs_index(self) -> TemplateComponent:
        if self.type == "button" and (self.sub_type is None or self.index is None):
            raise ValueError("a button component needs sub_type and index")
        return self


class TemplateContent(_Model):
    name: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$")]
    language: Language
    components: Annotated[list[TemplateComponent], Field(max_length=20)] = []


class InteractiveText(_Model):
    text: Annotated[str, Field(min_length=1, max_length=1024)]


class ReplyButton(_Model):
    id: Annotated[str, Field(min_length=1, max_length=256)]
    title: Annotated[str, Field(min_length=1, max_length=20)]


class Button(_Model):
    type: Literal["reply"]
    reply: ReplyButton


class ButtonAction(_Model):
    buttons: Annotated[list[Button], Field(min_length=1, max_length=3)]


class ListRow(_Model):
    id: Annotated[str, Field(min_length=1, max_length=200)]
    title: Annotated[str, Field(min_length=1, max_length=24)]
    description: Annotated[str, Field(min_length=1, max_length=72)] | None = None


class ListSection(_Model):
    title: Annotated[str, Field(min_length=1, max_length=24)] | None = None
    rows: Annotated[list[ListRow], Field(min_length=1, max_length=10)]


class ListAction(_Model):
    button: Annotated[str, Field(min_length=1, max_length=20)]
    sections: Annotated[list[ListSection], Field(min_length=1, max_length=10)]


class InteractiveHeader(_Open):
    type: Literal["text", "image", "video", "document"]


class InteractiveButtons(_Model):
    type: Literal["button"]
    header: InteractiveHeader | None = None
    body: InteractiveText
    footer: InteractiveText | None = None
    action: ButtonAction


class InteractiveList(_Model):
    type: Literal["list"]
    header: InteractiveHeader | None = None
    body: InteractiveText
    footer: InteractiveText | None = None
    action: ListAction


class Reaction(_Model):
    message_id: Annotated[str, Field(min_length=1, max_length=256)]
    emoji: Annotated[str, Field(min_length=0, max_length=16)]


class Context(_Model):
    message_id: Annotated[str, Field(min_length=1, max_length=256)]


# --- send requests: one model per type, told apart by `type` ------------------------------------


class _Send(_Model):
    messaging_product: Literal["whatsapp"] = "whatsapp"
    recipient_type: Literal["individual"] = "individual"
    to: Annotated[str, Field(min_length=1, max_length=21, pattern=r"^\+?[0-9]{6,20}$")]
    phone_number_id: (
        Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] | None
    ) = None
    context: Context | None = None


class TextMessage(_Send):
    type: Literal["text"]
    text: TextContent


class TemplateMessage(_Send):
    type: Literal["template"]
    template: TemplateContent


class ImageMessage(_Send):
    type: Literal["image"]
    image: CaptionedMedia


class VideoMessage(_Send):
    type: Literal["video"]
    video: CaptionedMedia


class AudioMessage(_Send):
    type: Literal["audio"]
    audio: Media


class DocumentMessage(_Send):
    type: Literal["document"]
    document: DocumentMedia


class StickerMessage(_Send):
    type: Literal["sticker"]
    sticker: Media


class InteractiveMessage(_Send):
    type: Literal["interactive"]
    interactive: Annotated[InteractiveButtons | InteractiveList, Field(discriminator="type")]


class ReactionMessage(_Send):
    type: Literal["reaction"]
    reaction: Reaction


AnySend = (
    TextMessage | TemplateMessage | ImageMessage | VideoMessage | AudioMessage | DocumentMessage
    | StickerMessage | InteractiveMessage | ReactionMessage
)  # fmt: skip


class SendMessageRequest(RootModel[Annotated[AnySend, Field(discriminator="type")]]):
    """A message to send: the Cloud API body, plus `phone_number_id` when there are several."""


# --- responses ----------------------------------------------------------------------------------

MessageStatusName = Literal[
    "received", "queued", "sending", "sent", "delivered", "read", "failed", "ambiguous"
]
OUTBOUND_STATUSES = (QUEUED, SENDING, SENT, "delivered", "read", FAILED, AMBIGUOUS)


class Links(_Model):
    self: str


class MessageAccepted(_Model):
    id: UUID
    status: Literal["queued"] = "queued"
    links: Links


class MessageError(_Model):
    code: int | None = Field(description="Meta's error code; null for refusals of our own")
    title: str | None
    details: str | None = Field(description="For billing refusals, the refusal code (e.g. quota_exceeded)")


class MessageView(_Model):
    id: UUID
    direction: Literal["inbound", "outbound"]
    type: str
    status: MessageStatusName
    to: str | None
    phone_number_id: str | None
    wamid: str | None
    text: str | None
    context_message_id: str | None
    error: MessageError | None
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    failed_at: datetime | None
    links: Links


class ListMessagesQuery(_Model):
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    cursor: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    status: Literal["queued", "sending", "sent", "delivered", "read", "failed", "ambiguous"] | None = None


class MessagePathParams(_Model):
    message_id: UUID
