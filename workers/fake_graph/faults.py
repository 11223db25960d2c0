"""Fault rules for the fake Graph API, settable at runtime over `POST /_fake/faults`.

A rule is a JSON object:

    {"kind": "error" | "throttle" | "outage" | "timeout" | "drop" | "latency",
     "endpoint": "messages" | "media" | "download" | "templates" | null,   (null: every endpoint)
     "phone_number_id": "...",      only sends from this number (null: any)
     "rate": 0.0-1.0,               chance that a matching request is hit (default 1)
     "count": N,                    hit only the next N matching requests (default: until reset)
     "code": 131047, "http_status": 400, "message": "...", "subcode": 2494055, "details": "...",
     "latency_ms": 50,              for "latency": added to every matching request
     "jitter_ms": 10,               for "latency": each request's draw is uniform in ±jitter_ms
     "hang_seconds": 30,            for "timeout": how long to hold the request before a gateway's
                                    bare 504 (no Meta error body); a client timing out sooner never hears
     "commit": true}                for "timeout"/"drop" on sends: the send is accepted and logged
                                    first (the ambiguous case), or not (false)

"throttle" is an error with 130429 / HTTP 429 unless `code` says otherwise (80007, 131056...);
"outage" is an error with code 2 / HTTP 503. "drop" starts an answer and closes the connection
mid-body, which a client sees as a truncated response.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

KINDS = frozenset({"error", "throttle", "outage", "timeout", "drop", "latency"})
ENDPOINTS = frozenset({"messages", "media", "download", "templates"})

TITLES: dict[int, str] = {
    1: "An unknown error occurred",
    2: "Service temporarily unavailable",
    4: "Application request limit reached",
    100: "Invalid parameter",
    190: "Invalid OAuth access token",
    80007: "Rate limit issues",
    130429: "Rate limit hit",
    131000: "Something went wrong",
    131026: "Message undeliverable",
    131047: "Re-engagement message",
    131050: "User has stopped marketing messages",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
}


def default_status(code: int) -> int:
    if code in (130429, 80007, 4):
        return 429
    if code in (1, 131000):
        return 500
    if code == 2:
        return 503
    if code == 190:
        return 401
    return 400


class FaultSpecError(ValueError):
    pass


@dataclass(slots=True)
class Fault:
    id: int
    kind: str
    endpoint: str | None = None
    phone_number_id: str | None = None
    rate: float = 1.0
    remaining: int | None = None
    code: int = 131000
    http_status: int = 500
    message: str = ""
    subcode: int | None = None
    details: str | None = None
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    hang_seconds: float = 30.0
    commit: bool = True
    fired: int = 0

    def matches(self, endpoint: str, phone_number_id: str | None) -> bool:
        if self.endpoint is not None and self.endpoint != endpoint:
            return False
        if self.phone_number_id is not None and self.phone_number_id != phone_number_id:
            return False
        return self.remaining is None or self.remaining > 0

    def fire(self) -> bool:
        """Whether this request is hit; uses up one of `count` when it is."""
        if self.rate < 1.0 and random.random() >= self.rate:
            return False
        if self.remaining is not None:
            self.remaining -= 1
        self.fired += 1
        return True

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_fault(spec: Any, fault_id: int) -> Fault:
    if not isinstance(spec, dict):
        raise FaultSpecError("a fault is a JSON object")
    kind = spec.get("kind", "error")
    if kind not in KINDS:
        raise FaultSpecError(f"kind must be one of {sorted(KINDS)}")
    endpoint = spec.get("endpoint")
    if endpoint is not None and endpoint not in ENDPOINTS:
        raise FaultSpecError(f"endpoint must be one of {sorted(ENDPOINTS)} or null")
    default_code = {"throttle": 130429, "outage": 2}.get(kind, 131000)
    try:
        code = int(spec.get("code", default_code))
        fault = Fault(
            id=fault_id,
            kind=kind,
            endpoint=endpoint,
            phone_number_id=None if spec.get("phone_number_id") is None else str(spec["phone_number_id"]),
            rate=float(spec.get("rate", 1.0)),
            remaining=None if spec.get("count") is None else int(spec["count"]),
            code=code,
            http_status=int(spec.get("http_status", default_status(code))),
            message=str(spec.get("message") or TITLES.get(code, "Fault injected by the fake Graph API")),
            subcode=None if spec.get("subcode") is None else int(spec["subcode"]),
            details=None if spec.get("details") is None else str(spec["details"]),
            latency_ms=float(spec.get("latency_ms", 0.0)),
            jitter_ms=float(spec.get("jitter_ms", 0.0)),
            hang_seconds=float(spec.get("hang_seconds", 30.0)),
            commit=bool(spec.get("commit", True)),
        )
    except (TypeError, ValueError) as exc:
        raise FaultSpecError(f"bad fault field: {exc}") from exc
    if not 0.0 <= fault.rate <= 1.0:
        raise FaultSpecError("rate must be between 0 and 1")
    return fault
