"""Media checksums as Meta writes them: base64 of the SHA-256 digest in webhooks, and possibly hex
from the media endpoint. Compared as digests, never as strings."""

from __future__ import annotations

import binascii
import hashlib
import re
from base64 import b64decode, urlsafe_b64decode

DIGEST_SIZE = hashlib.sha256().digest_size
_HEX = re.compile(r"[0-9a-fA-F]{64}")


def decode_sha256(claimed: str) -> bytes | None:
    """The 32-byte digest a checksum names (hex, base64 or URL-safe base64); None if it names none."""
    text = claimed.strip()
    if _HEX.fullmatch(text):
        return bytes.fromhex(text)
    padded = text + "=" * (-len(text) % 4)
    try:
        urlsafe = "-" in text or "_" in text
        digest = urlsafe_b64decode(padded) if urlsafe else b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest if len(digest) == DIGEST_SIZE else None


def checksum_problem(data: bytes, claimed: str) -> str | None:
    """Why `data` does not match `claimed`, or None when it does."""
    expected = decode_sha256(claimed)
    if expected is None:
        return f"sha256 {claimed!r} is neither hex nor base64 of a SHA-256 digest"
    actual = hashlib.sha256(data).digest()
    if actual != expected:
        return f"sha256 of the download is {actual.hex()}, not {expected.hex()} ({claimed})"
    return None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
