"""Keep a worker process's boot-time objects out of the garbage collector's full passes.

Everything built while a worker boots (modules, actors, pools, clients) lives as long as the
process; a full collection would walk all of it, pausing every worker thread for milliseconds, and
every message pays for that in throughput and tail latency. Installed by the worker entry module
only: a test process that runs workers in-process keeps its collector as it is.
"""

from __future__ import annotations

import gc
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware


class FreezeAfterBoot(Middleware):
    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        gc.collect()
        gc.freeze()
