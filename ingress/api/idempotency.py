"""`Idempotency-Key`: a retried request with the same key and the same body gets the first answer.

The key is kept on the message row it created, with a fingerprint of the request, for 24 hours.
A replay with the same fingerprint answers as the first time did; a different body under a key
still retained is refused (`idempotency_key_reused`). After 24 hours the key may be used anew.
Only accepted requests keep their key: a refused one rolls back, so it can be retried as is.
"""

from __future__ import annotations

import hashlib
import re

import orjson
from pydantic import BaseModel

from domain.idempotency import RETENTION
from ingress.api.errors import ApiError, ErrorCode

__all__ = ["RETENTION", "fingerprint", "parse_key"]

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def parse_key(header: str | None) -> str | None:
    if header is None:
        return None
    key = header.strip()
    if not _KEY.fullmatch(key):
        raise ApiError(ErrorCode.IDEMPOTENCY_KEY_INVALID)
    return key


def fingerprint(operation_id: str, request: BaseModel) -> str:
    """Same for requests that mean the same (key order and whitespace do not count)."""
    canonical = orjson.dumps(request.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(operation_id.encode() + b"\n" + canonical).hexdigest()
