from __future__ import annotations

from collections.abc import Iterator

import pytest

from config.settings import get_settings
from devkit.services import rabbitmq_vhost
from domain import jobs
from tests.integration.ingress.support import (
    QueueReader,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def vhost_url() -> Iterator[str]:
    with rabbitmq_vhost(get_settings().rabbitmq_url) as url:
        yield url


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
