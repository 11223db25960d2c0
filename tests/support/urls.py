"""Database URLs of the test run."""

from __future__ import annotations

from urllib.parse import urlsplit


def url_through(url: str, host_port: str) -> str:
    """`url` with its host and port replaced by `host_port` (a pooler in front of that server)."""
    parts = urlsplit(url)
    credentials, at, _ = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{credentials}{at}{host_port}").geturl()
