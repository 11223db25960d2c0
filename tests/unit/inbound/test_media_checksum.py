"""Media checksums compared as digests, whichever encoding names them."""

from __future__ import annotations

import base64
import hashlib

import pytest

from domain.media import checksum_problem, decode_sha256

DATA = b"\x89PNG some image"
DIGEST = hashlib.sha256(DATA).digest()


@pytest.mark.parametrize(
    "claimed",
    [
        base64.b64encode(DIGEST).decode(),  # as Meta's webhooks carry it
        base64.b64encode(DIGEST).decode().rstrip("="),
        base64.urlsafe_b64encode(DIGEST).decode(),
        DIGEST.hex(),  # as a media endpoint may answer
        DIGEST.hex().upper(),
    ],
)
def test_every_encoding_of_the_digest_matches(claimed: str) -> None:
    assert decode_sha256(claimed) == DIGEST
    assert checksum_problem(DATA, claimed) is None


def test_metas_documented_example_decodes_to_32_bytes() -> None:
    digest = decode_sha256("SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI=")
    assert digest is not None and len(digest) == 32


@pytest.mark.parametrize(
    "claimed",
    [base64.b64encode(hashlib.sha256(b"other").digest()).decode(), hashlib.sha256(b"x").hexdigest()],
)
def test_another_digest_is_a_mismatch_naming_both(claimed: str) -> None:
    problem = checksum_problem(DATA, claimed)
    assert problem is not None and DIGEST.hex() in problem


@pytest.mark.parametrize("claimed", ["", "abc", "not base64!", base64.b64encode(b"short").decode(), "a" * 63])
def test_what_names_no_digest_is_a_mismatch_too(claimed: str) -> None:
    assert decode_sha256(claimed) is None
    assert "neither hex nor base64" in (checksum_problem(DATA, claimed) or "")
