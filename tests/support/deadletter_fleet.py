"""A fleet for the dead-letter tests: workers that fail jobs, and the operator that redrives them."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.middleware import AgeLimit, CurrentMessage

from config import Settings
from devkit.processes import queue_depth, wait_for
from domain.deadletters import DeadLetterFilter, Scope
from services import deadletters as dl
from services.publisher import BrokerJobPublisher
from workers import resources
from workers.consumer import GatheredAckRabbitmqBroker
from workers.deadletters import DeadLetterRecorder
from workers.resources import ResourcesMiddleware
from workers.retries import FleetRetries

OPERATOR = Scope.everyone()


class Fleet:
    """One broker, one worker, the real middleware; `actor()` before `start()`."""

    def __init__(self, settings: Settings, *, max_retries: int = 2, outage_hold: float = 3600.0) -> None:
        self.settings = settings
        self.queue = f"dlq_{uuid.uuid4().hex[:10]}"
        self.retries = FleetRetries(
            max_retries=max_retries, min_backoff=10, max_backoff=40, outage_max_backoff=80,
            outage_hold=outage_hold,
        )  # fmt: skip
        self.broker = GatheredAckRabbitmqBroker(
            url=settings.rabbitmq_url,
            confirm_delivery=True,
            middleware=[
                AgeLimit(),
                CurrentMessage(),
                DeadLetterRecorder(),
                self.retries,
                ResourcesMiddleware(),
            ],
        )
        self.publisher = BrokerJobPublisher(self.broker)
        self.calls: Counter[Any] = Counter()
        self._lock = threading.Lock()
        self.worker: dramatiq.Worker | None = None

    def actor(
        self,
        behaviour: Callable[..., None],
        *,
        name: str | None = None,
        throws: tuple[type[BaseException], ...] = (),
        **options: Any,
    ) -> dramatiq.Actor[Any, Any]:
        """An actor on this fleet's queue that counts each call by its first argument, then behaves."""
        lock, calls = self._lock, self.calls

        def run(key: str, *args: Any, **kwargs: Any) -> None:
            with lock:
                calls[key] += 1
            behaviour(key, *args, **kwargs)

        return dramatiq.actor(
            run, broker=self.broker, queue_name=self.queue, actor_name=name or f"{self.queue}_actor",
            throws=throws, **options,
        )  # fmt: skip

    def start(self, res: resources.Resources | None = None) -> None:
        resources.install(res or resources.build(self.broker, self.settings))
        self.worker = dramatiq.Worker(self.broker, worker_threads=2, worker_timeout=50)
        self.worker.start()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        resources.install(None)
        self.broker.close()

    def xq_depth(self) -> int:
        return queue_depth(self.settings.rabbitmq_url, f"{self.queue}.XQ")

    def letters(self, **criteria: Any) -> list[dl.Letter]:
        page = dl.list_dead_letters(
            resources.current().engine, OPERATOR, DeadLetterFilter(queue=self.queue, **criteria), limit=500
        )
        return list(page.items)

    def wait_letters(self, n: int, timeout: float = 30.0, **criteria: Any) -> list[dl.Letter]:
        assert wait_for(lambda: len(self.letters(**criteria)) >= n, timeout), (
            f"expected {n} letters, have {len(self.letters(**criteria))}"
        )
        return self.letters(**criteria)

    def wait_calls(self, key: str, n: int, timeout: float = 30.0) -> None:
        assert wait_for(lambda: self.calls[key] >= n, timeout), f"{key}: {self.calls[key]} calls, wanted {n}"

    def settle(self) -> None:
        """Every message of the queue (and its delay queue) handled."""
        self.broker.join(self.queue, timeout=30_000)
        assert self.worker is not None
        self.worker.join()
