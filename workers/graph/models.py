"""What the Graph API answers, reduced to what the fleet uses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SendResult:
    """An accepted send. `wamid` is the key every later status webhook refers to."""

    wamid: str
    wa_id: str | None
    input: str | None = None
    # Only template sends carry it ("accepted", "held_for_quality_assessment", ...).
    message_status: str | None = None


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """A media object's metadata; `url` is short-lived and needs the same bearer token."""

    url: str
    mime_type: str
    sha256: str
    file_size: int
    id: str
