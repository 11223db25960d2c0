"""A job that fails for good until it is fixed: an in-process Dramatiq worker on the real broker
with the fleet's dead-letter and retry middleware, on a queue of this test's own."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from config import Settings
from domain.errors import PermanentError
from domain.ports import Job
from services.publisher import BrokerJobPublisher
from workers import resources
from workers.consumer import GatheredAckRabbitmqBroker
from workers.deadletters import DeadLetterRecorder
from workers.resources import ResourcesMiddleware
from workers.retries import FleetRetries


class OrderRejected(PermanentError):
    pass


class FailingJob:
    def __init__(self, settings: Settings) -> None:
        self.queue = f"console_{uuid.uuid4().hex[:10]}"
        self.actor_name = f"{self.queue}_import_order"
        self.broker = GatheredAckRabbitmqBroker(
            url=settings.rabbitmq_url,
            confirm_delivery=True,
            middleware=[
                CurrentMessage(),
                DeadLetterRecorder(),
                FleetRetries(
                    max_retries=0, min_backoff=10, max_backoff=20, outage_max_backoff=40, outage_hold=60
                ),
                ResourcesMiddleware(),
            ],
        )
        self.publisher = BrokerJobPublisher(self.broker)
        self.fixed = threading.Event()
        self.done = threading.Event()
        self.settings = settings

        def import_order(order: str, organization_id: str) -> None:
            if not self.fixed.is_set():
                raise OrderRejected(f"order {order} refers to an unknown product")
            self.done.set()

        dramatiq.actor(
            import_order, broker=self.broker, queue_name=self.queue, actor_name=self.actor_name,
            throws=(PermanentError,),
        )  # fmt: skip
        self.worker: dramatiq.Worker | None = None

    def start(self) -> FailingJob:
        resources.install(resources.build(self.broker, self.settings))
        self.worker = dramatiq.Worker(self.broker, worker_threads=1, worker_timeout=50)
        self.worker.start()
        return self

    def send(self, order: str, organization_id: Any) -> None:
        self.publisher.publish(
            Job(queue=self.queue, actor=self.actor_name, args=(order,),
                kwargs={"organization_id": str(organization_id)})
        )  # fmt: skip

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        resources.install(None)
        self.broker.close()
