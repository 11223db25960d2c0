"""Per-run isolation on the real services: a RabbitMQ vhost and a Postgres database of our own.

Each test session gets fresh ones, so test runs (and developers) never consume each other's messages
or see each other's rows, and nothing is left behind.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def rabbitmq_vhost(base_url: str) -> Iterator[str]:
    """A fresh vhost on the broker of `base_url`; yields the URL that points at it."""
    if shutil.which("rabbitmqctl") is None:
        raise RuntimeError("rabbitmqctl is needed to make an isolated vhost for the tests")
    name = f"adsapp_test_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(base_url)
    user = parts.username or "guest"
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        yield parts._replace(path="/" + quote(name, safe="")).geturl()
    finally:
        _rabbitmqctl("delete_vhost", name)
