"""Raw ASGI plumbing for the webhook routes: no Request object, one pass over the headers."""

from __future__ import annotations

from typing import Final

from starlette.types import Receive, Scope, Send

from ingress.ids import new_id

JSON: Final = b"application/json"
TEXT: Final = b"text/plain; charset=utf-8"
MAX_REQUEST_ID_LENGTH: Final = 128


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


def header_map(scope: Scope, wanted: frozenset[bytes]) -> dict[bytes, bytes]:
    """The first value of each wanted header (names are lower case in ASGI)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in wanted and name not in found:
            found[name] = value
    return found


def request_id_from(header: bytes | None) -> str:
    """The caller's X-Request-Id when it is a sane token, else a new one."""
    if header and len(header) <= MAX_REQUEST_ID_LENGTH:
        try:
            text = header.decode("ascii")
        except UnicodeDecodeError:
            pass
        else:
            if text.isprintable() and " " not in text:
                return text
    return new_id()


def is_json_content_type(value: bytes | None) -> bool:
    if not value:
        return False
    media_type = value.split(b";", 1)[0].strip().lower()
    return media_type == JSON


def declared_length(value: bytes | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, counting while it streams in, so an unannounced large body stops at `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


async def respond(
    send: Send,
    status: int,
    body: bytes,
    request_id: str | None = None,
    content_type: bytes = JSON,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
