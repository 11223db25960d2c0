from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from config.settings import Settings, get_settings
from domain import jobs
from tests.integration.ingress.support import (
    STRIPE_SECRET,
    VERIFY_TOKEN,
    WHATSAPP_OLD_SECRET,
    WHATSAPP_SECRET,
    QueueReader,
)
from tests.support.services import rabbitmq_vhost

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def vhost_url() -> Iterator[str]:
    with rabbitmq_vhost(get_settings().rabbitmq_url) as url:
        yield url


def make_settings(rabbitmq_url: str, **overrides: object) -> Settings:
    # Readiness only needs a reachable server: the maintenance database always exists.
    database_url = urlsplit(get_settings().database_url)._replace(path="/postgres").geturl()
    values: dict[str, object] = {
        "rabbitmq_url": rabbitmq_url,
        "database_url": database_url,
        "whatsapp_app_secret": f"{WHATSAPP_SECRET},{WHATSAPP_OLD_SECRET}",
        "whatsapp_verify_token": VERIFY_TOKEN,
        "stripe_webhook_secret": f"whsec_other,{STRIPE_SECRET}",
        "publish_timeout_seconds": 2.0,
        "rabbitmq_reconnect_interval_seconds": 0.2,
        "readiness_timeout_seconds": 2.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def queues(vhost_url: str) -> Iterator[QueueReader]:
    """A reader on the test vhost; the webhook queues start (and are left) empty for each test."""
    reader = QueueReader(vhost_url)
    for queue in (jobs.INBOUND_QUEUE, jobs.BILLING_QUEUE):
        reader.channel.queue_declare(
            queue,
            durable=True,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{queue}.XQ"},
        )
        reader.purge(queue)
    yield reader
    reader.purge(jobs.INBOUND_QUEUE, jobs.BILLING_QUEUE)
    reader.close()
