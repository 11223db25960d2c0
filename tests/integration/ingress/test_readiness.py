"""/readyz on the real services: probed at most once a second however hard it is polled, and a
failing dependency named without the exception's text."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from config import Settings
from devkit.processes import free_port
from ingress.app import create_app
from ingress.health import Readiness
from tests.integration.ingress.support import UvicornThread
from tests.support.ingress import make_settings

pytestmark = pytest.mark.integration


def test_readyz_never_echoes_exception_text(vhost_url: str, settings: Settings) -> None:
    dead_pg = f"postgresql+psycopg://adsapp_app:s3cr3t-pw@127.0.0.1:{free_port()}/adsapp"
    app = create_app(make_settings(vhost_url, database_url=dead_pg), configure_logs=False)
    with UvicornThread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["failing"] == ["postgres"]
    assert answer.json()["checks"] == {"rabbitmq": "ok", "postgres": "down", "redis": "ok"}
    for leak in ("127.0.0.1", "s3cr3t", "adsapp_app", "refused", "Error"):
        assert leak not in answer.text


def test_readyz_probes_at_most_once_a_second(vhost_url: str, settings: Settings) -> None:
    app = create_app(make_settings(vhost_url), configure_logs=False)
    readiness: Readiness = app.state.readiness
    with UvicornThread(app) as url:

        async def poll() -> list[int]:
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                answers = await asyncio.gather(*(client.get("/readyz") for _ in range(40)))
            return [a.status_code for a in answers]

        before = readiness.probes_run
        statuses = asyncio.run(poll())
        assert statuses == [200] * 40
        # 40 answers from the real probes of Postgres, Redis and RabbitMQ, probed once (twice if
        # the burst straddled a second on this slow machine).
        assert readiness.probes_run - before <= 2
