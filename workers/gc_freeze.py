"""Keep a worker process's garbage collector from walking what it need not.

Everything built while a worker boots (modules, actors, pools, clients) lives as long as the
process; a full collection would walk all of it, pausing every worker thread for milliseconds, and
every message pays for that in throughput and tail latency: it is frozen after boot.

The youngest generation is collected every 50,000 allocations instead of every 700. A send keeps
a few hundred objects alive for as long as Meta takes to answer, so at 700 each collection walked
the hundreds of sends in flight and moved them to older generations, to be walked again there:
the collector was an eighth of a worker process's CPU at a thousand sends a second. Collected
less often, most of those objects are freed by their reference counts before any collection sees
them; worker CPU per send fell by a tenth and the resident size did not change (bench.outbound,
same-hour runs, bench/RESULTS.md).

Installed by the worker entry module only: a test process that runs workers in-process keeps its
collector as it is.
"""

from __future__ import annotations

import gc
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

YOUNGEST_THRESHOLD = 50_000


class FreezeAfterBoot(Middleware):
    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        gc.collect()
        gc.freeze()
        _, middle, oldest = gc.get_threshold()
        gc.set_threshold(YOUNGEST_THRESHOLD, middle, oldest)
