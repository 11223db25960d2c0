"""Why a use case refused: one error with a stable code, which the HTTP layer maps to its answer.

The codes are the API's error codes (`ingress.api.errors.ErrorCode` and the billing refusal codes),
so a refusal reads the same whether it came from a single send or from planning a bulk job.
"""

from __future__ import annotations

from typing import Any


class Refused(Exception):
    """The request cannot be carried out as given; nothing was written."""

    def __init__(self, code: str, message: str | None = None, details: Any = None) -> None:
        self.code = str(code)
        self.message = message
        self.details = details
        super().__init__(f"{self.code}: {message or ''}")


class NotFound(Refused):
    def __init__(self, message: str | None = None) -> None:
        super().__init__("not_found", message)


class Conflict(Refused):
    """A state that forbids the operation (a job already finished, a key used with another body)."""
