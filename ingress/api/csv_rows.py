"""Contact rows from a CSV body: `text/csv` as is, or the `file` part of `multipart/form-data`.

The header row names the columns (wa_id required; name, tags, opt_in optional). Rows are returned
as given, to be checked one by one by the import's planning. Multipart is read with the standard
library's MIME parser: the body is already in memory (bounded by the operation's limit).
"""

from __future__ import annotations

import csv
import io
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Final

from ingress.api.errors import ApiError, ErrorCode

MAX_ROWS: Final = 100_000


def rows_from(content_type: str, data: bytes) -> list[dict[str, Any]]:
    if content_type.split(";")[0].strip().lower() == "multipart/form-data":
        data = _file_part(content_type, data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(ErrorCode.INVALID_CSV, "The CSV is not UTF-8.") from exc
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "wa_id" not in [f.strip() for f in reader.fieldnames]:
        raise ApiError(ErrorCode.INVALID_CSV, "The first row must name the columns, wa_id among them.")
    rows: list[dict[str, Any]] = []
    try:
        for row in reader:
            if len(rows) >= MAX_ROWS:
                raise ApiError(ErrorCode.TOO_MANY_ROWS, details={"limit": MAX_ROWS})
            rows.append({(k or "").strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()})
    except csv.Error as exc:
        raise ApiError(ErrorCode.INVALID_CSV, f"Line {reader.line_num}: {exc}") from exc
    return rows


def _file_part(content_type: str, data: bytes) -> bytes:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + data
    )
    if not message.is_multipart():
        raise ApiError(ErrorCode.INVALID_CSV, "The multipart body has no parts.")
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            payload = part.get_payload(decode=True)
            return payload if isinstance(payload, bytes) else b""
    raise ApiError(ErrorCode.INVALID_CSV, "Send the CSV as the multipart part named 'file'.")
