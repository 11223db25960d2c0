"""Counts that every process of the fleet adds to and any process reads: time buckets in Redis.

Prometheus counters live in one process; the console must show the whole fleet's figures (queue
traffic, webhook answers, pacing deferrals) without a Prometheus server. So each process adds its
counts in memory (a dict under a lock: the hot path never waits for Redis), and a thread of its
own writes them once a second, in one pipeline, into two widths of bucket: a hash per second
(kept 3 minutes, for rates and the last minute) and a hash per minute (kept 65 minutes, for the
last hour), one field per thing counted. A reader sums a window's buckets, every process's counts
together.

A process that dies loses at most its last second of counts; while Redis cannot be reached the
counts stay in memory, merged (nothing older than the longest bucket's life is kept), and are
written when Redis answers again. Buckets are placed by each process's clock: hosts a few seconds
apart in time blur a rate's edges, nothing more.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE: Final = "adsapp:counts"
SECOND: Final = 1
MINUTE: Final = 60
_KEPT: Final = {SECOND: 180, MINUTE: 65 * 60}
# A second's counts are written within `interval` after it ends; readers of rates skip that long.
SETTLE_SECONDS: Final = 2


class Counts(Protocol):
    """What the counting parts of the fleet need: add in memory, never wait."""

    def add(self, family: str, field: str, n: int = 1) -> None: ...


_instances: weakref.WeakSet[FleetCounters] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for counters in list(_instances):
        counters._after_fork()


def bucket_key(namespace: str, family: str, width: int, bucket: int) -> str:
    return f"{namespace}:{family}:{width}:{bucket}"


class FleetCounters:
    """One per process and namespace; thread-safe. `add` is in memory; a daemon thread (started
    on the first add, and again in a forked child) writes the counts every `interval` seconds."""

    def __init__(
        self,
        redis: Redis,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self.namespace = namespace
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int, str], int] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        _instances.add(self)

    def add(self, family: str, field: str, n: int = 1) -> None:
        key = (family, int(self._clock()), field)
        with self._lock:
            if self._thread is None:
                self._start()
            self._pending[key] = self._pending.get(key, 0) + n

    def _after_fork(self) -> None:
        # The child has no writer thread, its lock may have been held by a thread that is gone,
        # and the pending counts are the parent's to write.
        self._lock = threading.Lock()
        self._pending = {}
        self._thread = None
        self._stop = threading.Event()

    def _start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fleet-counters", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def flush(self) -> bool:
        """Write what was added; False (the counts kept for the next try) if Redis failed."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return True
        try:
            self._write(pending)
        except RedisError as exc:
            log.warning("fleet counters not written; kept for the next try", extra={"error": repr(exc)})
            oldest = int(self._clock()) - _KEPT[MINUTE]
            with self._lock:
                for key, n in pending.items():
                    if key[1] >= oldest:
                        self._pending[key] = self._pending.get(key, 0) + n
            return False
        return True

    def _write(self, pending: Mapping[tuple[str, int, str], int]) -> None:
        buckets: dict[str, tuple[int, dict[str, int]]] = {}
        for (family, second, field), n in pending.items():
            for width in (SECOND, MINUTE):
                key = bucket_key(self.namespace, family, width, second // width)
                fields = buckets.setdefault(key, (width, {}))[1]
                fields[field] = fields.get(field, 0) + n
        pipe = self._redis.pipeline(transaction=False)
        for key, (width, fields) in buckets.items():
            for field, n in fields.items():
                pipe.hincrby(key, field, n)
            pipe.expire(key, _KEPT[width] + width)
        pipe.execute()

    def close(self) -> None:
        """Stop the thread and write what is left (at shutdown)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(self._interval + 5)
        self._thread = None
        self.flush()


def totals(
    redis: Redis,
    namespace: str,
    family: str,
    window_seconds: int,
    *,
    now: float | None = None,
    settle: int = 0,
) -> dict[str, int]:
    """Each field's count over the last `window_seconds`, every process's together.

    Up to three minutes the window is read in seconds, ending `settle` seconds ago (the buckets
    not yet surely written left out); longer ones in whole minutes, the current minute included
    (so "the last hour" spans 59 to 60 minutes)."""
    now = time.time() if now is None else now
    if window_seconds <= _KEPT[SECOND] - SETTLE_SECONDS:
        width, last, count = SECOND, int(now) - settle, window_seconds
    else:
        if window_seconds % MINUTE or window_seconds > _KEPT[MINUTE]:
            raise ValueError(f"a window of {window_seconds} s is not whole minutes up to {_KEPT[MINUTE]} s")
        width, last, count = MINUTE, int(now) // MINUTE, window_seconds // MINUTE
    pipe = redis.pipeline(transaction=False)
    for bucket in range(last - count + 1, last + 1):
        pipe.hgetall(bucket_key(namespace, family, width, bucket))
    summed: dict[str, int] = {}
    for fields in pipe.execute():
        for field, n in fields.items():
            name = field.decode() if isinstance(field, bytes) else str(field)
            summed[name] = summed.get(name, 0) + int(n)
    return summed


def rates(
    redis: Redis, namespace: str, family: str, window_seconds: int = 10, *, now: float | None = None
) -> dict[str, float]:
    """Each field's rate per second over the last `window_seconds` that are surely written."""
    counted = totals(redis, namespace, family, window_seconds, now=now, settle=SETTLE_SECONDS)
    return {field: n / window_seconds for field, n in counted.items()}


os.register_at_fork(after_in_child=_reset_after_fork)

_shared: dict[tuple[str, str], FleetCounters] = {}
_shared_lock = threading.Lock()


def shared(redis_url: str, namespace: str = DEFAULT_NAMESPACE) -> FleetCounters:
    """This process's counters for a Redis and namespace: one writer thread however many parts
    of the process count (the broker's middleware, the send path, the webhook routes)."""
    with _shared_lock:
        counters = _shared.get((redis_url, namespace))
        if counters is None:
            client = Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
            counters = _shared[(redis_url, namespace)] = FleetCounters(client, namespace)
        return counters
