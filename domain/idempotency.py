"""How long an `Idempotency-Key` is kept with what it created."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

RETENTION: Final = timedelta(hours=24)
