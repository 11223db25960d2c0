"""Everything the fake Graph API remembers: accepted sends, request counts, faults, seeded data.

Kept in memory and touched only from the server's event loop, so it needs no locks and each
request does a dict update and a list append.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import time
from base64 import urlsafe_b64encode
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from workers.fake_graph.faults import Fault


@dataclass(slots=True)
class FakeConfig:
    bad_tokens: set[str] = field(default_factory=lambda: {"bad-token"})
    latency_ms: float = 0.0
    # Each answer's latency is latency_ms plus a uniform draw in [-jitter, +jitter] (never below 0).
    latency_jitter_ms: float = 0.0
    # Status webhooks back to the ingress; off unless a URL is set.
    webhook_url: str | None = None
    app_secret: str = "dev-app-secret"  # noqa: S105 (WHATSAPP_APP_SECRET's development default)
    webhook_statuses: tuple[str, ...] = ("sent", "delivered", "read")
    webhook_delay_ms: float = 0.0
    waba_id: str = "fake-waba"


@dataclass(slots=True)
class SendRecord:
    phone_number_id: str
    to: str
    type: str
    wamid: str
    marker: str | None
    payload: dict[str, Any]
    at: float

    def as_json(self) -> dict[str, Any]:
        return {
            "phone_number_id": self.phone_number_id,
            "to": self.to,
            "type": self.type,
            "wamid": self.wamid,
            "biz_opaque_callback_data": self.marker,
            "payload": self.payload,
            "at": self.at,
        }


@dataclass(slots=True)
class MediaSeed:
    mime_type: str = "image/jpeg"
    file_size: int | None = None


def _jittered(ms: float, jitter_ms: float) -> float:
    if jitter_ms <= 0:
        return ms
    return max(0.0, ms + random.uniform(-jitter_ms, jitter_ms))


class FakeGraphState:
    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config = config or FakeConfig()
        self._prefix = urlsafe_b64encode(os.urandom(6)).decode().rstrip("=")
        self._ids = itertools.count(1)
        self.sends: list[SendRecord] = []
        self.marker_counts: Counter[tuple[str, str]] = Counter()
        self.requests: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.faults: list[Fault] = []
        self._fault_ids = itertools.count(1)
        self.templates: dict[str, list[dict[str, Any]]] = {}
        self.media: dict[str, MediaSeed] = {}

    # -- sends --------------------------------------------------------------------------------

    def new_wamid(self, to: str) -> str:
        raw = f"{to}:{self._prefix}:{next(self._ids)}".encode()
        return "wamid." + urlsafe_b64encode(raw).decode().rstrip("=")

    def record_send(self, phone_number_id: str, payload: dict[str, Any], wamid: str) -> SendRecord:
        marker = payload.get("biz_opaque_callback_data")
        record = SendRecord(
            phone_number_id=phone_number_id,
            to=str(payload.get("to", "")),
            type=str(payload.get("type", "text")),
            wamid=wamid,
            marker=marker if isinstance(marker, str) else None,
            payload=payload,
            at=time.time(),
        )
        self.sends.append(record)
        if record.marker is not None:
            self.marker_counts[(phone_number_id, record.marker)] += 1
        return record

    def count_request(self, endpoint: str, target: str) -> None:
        self.requests[endpoint][target] += 1

    # -- faults -------------------------------------------------------------------------------

    def next_fault_id(self) -> int:
        return next(self._fault_ids)

    def pick_faults(self, endpoint: str, phone_number_id: str | None) -> tuple[float, Fault | None]:
        """Added latency (ms) and the one failing rule that hits this request, if any."""
        latency = _jittered(self.config.latency_ms, self.config.latency_jitter_ms)
        chosen: Fault | None = None
        for fault in self.faults:
            if not fault.matches(endpoint, phone_number_id):
                continue
            if fault.kind == "latency":
                if fault.fire():
                    latency += _jittered(fault.latency_ms, fault.jitter_ms)
            elif chosen is None and fault.fire():
                chosen = fault
        return latency, chosen

    # -- seeded data --------------------------------------------------------------------------

    def media_bytes(self, media_id: str) -> bytes:
        digest = hashlib.sha256(media_id.encode()).digest()
        seed = self.media.get(media_id)
        size = seed.file_size if seed and seed.file_size is not None else 1024 + digest[0] * 16
        return (digest * (size // len(digest) + 1))[:size]

    def media_mime(self, media_id: str) -> str:
        seed = self.media.get(media_id)
        return seed.mime_type if seed else "image/jpeg"

    # -- control ------------------------------------------------------------------------------

    def reset(self, everything: bool = False) -> None:
        self.sends.clear()
        self.marker_counts.clear()
        self.requests.clear()
        self.faults.clear()
        if everything:
            self.templates.clear()
            self.media.clear()
            self.config = FakeConfig()

    def log_json(
        self, summary: bool = False, phone_number_id: str | None = None, with_sends: bool = True
    ) -> dict[str, Any]:
        sends = self.sends
        if phone_number_id is not None:
            sends = [s for s in sends if s.phone_number_id == phone_number_id]
        counted = [
            (pnid, marker, n)
            for (pnid, marker), n in self.marker_counts.items()
            if phone_number_id is None or pnid == phone_number_id
        ]
        counts = [{"phone_number_id": p, "marker": m, "count": n} for p, m, n in counted]
        body: dict[str, Any] = {
            "total": len(sends),
            "duplicates": [{"phone_number_id": p, "marker": m, "count": n} for p, m, n in counted if n > 1],
            "requests": {endpoint: dict(counter) for endpoint, counter in self.requests.items()},
            "faults": [fault.as_json() for fault in self.faults],
        }
        if not summary:
            if with_sends:
                body["sends"] = [s.as_json() for s in sends]
            body["counts"] = counts
        return body
