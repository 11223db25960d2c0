"""The cheap checks a signed body must pass before it is queued: UTF-8 JSON, bounded nesting, shape.

Only the envelope is looked at; what is inside (entries, tenants, event objects) is the workers' job.
orjson refuses nesting past 1,024 levels with an ordinary decode error, so a hostile body can neither
exhaust the stack nor hold the event loop; the tighter depth limit keeps bodies that the workers'
stdlib `json` (recursion-bound near 1,000) could not read out of the queue.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

NOT_UTF8: Final = "not_utf8"
NOT_JSON: Final = "not_json"
TOO_DEEP: Final = "too_deep"
WRONG_SHAPE: Final = "wrong_shape"


class InvalidBody(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


def parse_json(raw: bytes, max_depth: int) -> tuple[str, Any]:
    """The body as text (exactly as received) and as parsed JSON, or InvalidBody."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidBody(NOT_UTF8, f"body is not UTF-8 at byte {exc.start}") from None
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = TOO_DEEP if "depth limit" in str(exc) else NOT_JSON
        raise InvalidBody(reason, str(exc)) from None
    # Every level needs an opening bracket, so a body with few of them needs no walk at all.
    if raw.count(b"{") + raw.count(b"[") > max_depth and _deeper_than(document, max_depth):
        raise InvalidBody(TOO_DEEP, f"JSON nested deeper than {max_depth} levels")
    return text, document


def _deeper_than(document: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def check_whatsapp_shape(document: Any) -> None:
    if not isinstance(document, dict):
        raise InvalidBody(WRONG_SHAPE, "top level is not an object")
    if document.get("object") != "whatsapp_business_account":
        raise InvalidBody(WRONG_SHAPE, "object is not whatsapp_business_account")
    if not isinstance(document.get("entry"), list):
        raise InvalidBody(WRONG_SHAPE, "entry is not a list")


def check_stripe_shape(document: Any) -> None:
    if not isinstance(document, dict):
        raise InvalidBody(WRONG_SHAPE, "top level is not an object")
    if document.get("object") != "event":
        raise InvalidBody(WRONG_SHAPE, "object is not event")
    if not isinstance(document.get("id"), str) or not isinstance(document.get("type"), str):
        raise InvalidBody(WRONG_SHAPE, "id or type missing")
