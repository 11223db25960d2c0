"""Circuit breakers shared by every worker process: one for the Graph API, one per phone number.

State (closed / open / half-open, failure count, opened-at) lives in Redis through pybreaker's
`CircuitRedisStorage`, so a breaker opened by one process is open for all of them.

What counts as a failure:
- for a number's breaker: transient Graph API errors (5xx, timeouts, connection errors,
  throttling) and ambiguous send outcomes; not 131056, which is about one recipient;
- for the API-wide breaker: only signs that the API itself is unwell (transport failures,
  ambiguous outcomes, 5xx or Meta's service codes 1, 2, 131000, 131016), never one number's
  throttling.
Permanent and auth errors (a 131047 for one recipient, a 190) prove Meta answered, so they count
as successes. Exceptions that are not `FleetError`s are bugs of ours and are not recorded.

The guarded call runs *outside* pybreaker's per-breaker lock (pybreaker holds it across the whole
call, which would serialize every send of a process through the API-wide breaker); its outcome is
then replayed through `CircuitBreaker.call`, so pybreaker's state machine, `exclude` rules and
listeners decide as usual.

Redis away or emptied: while it cannot be reached no call is admitted (reading a breaker raises,
and the send waits the outage out like any Redis failure, without spending its retries); when it
has lost its keys (a restart without persistence) every breaker is closed again and re-learns,
`fail_max` failures opening it anew. Those calls fail at Meta as transient errors and are retried,
so nothing is lost; the cost is those few calls (plus the ones already in flight) per failing number.

Half-open probes are few fleet-wide: when a breaker's reset timeout has passed, a caller must win
`SET <probe key> NX PX` before its call goes through as the probe; every other caller in every
process gets `CircuitOpen` until the probe's outcome closes or re-opens the breaker (or its lock
expires, if the prober died). `opened_at` is stored in whole seconds and compared with each
host's clock, so the open period is accurate to about a second.
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import pybreaker
from prometheus_client import Gauge
from redis import Redis

from domain.errors import CircuitOpen, FleetError, GraphAmbiguousOutcome, GraphApiTransient
from services import breaker_keys

T = TypeVar("T")
log = logging.getLogger(__name__)

API_SCOPE = breaker_keys.API_SCOPE
PAIR_RATE_CODE = 131056
API_HEALTH_CODES = frozenset({1, 2, 131000, 131016})

# A count by state, not a series per phone number (which would grow with the tenants): which
# numbers are open is listed over the API and the console.
BREAKERS_SEEN = Gauge(
    "adsapp_graph_breakers_seen",
    "Graph API circuit breakers this process has used, by state as it last saw it (closed, half-open, "
    "open; the most any process of the group counts)",
    ["state"],
    multiprocess_mode="livemax",
)

_RELEASE_PROBE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def counts_against_number(exc: BaseException) -> bool:
    if isinstance(exc, GraphAmbiguousOutcome):
        return True
    return isinstance(exc, GraphApiTransient) and exc.info.code != PAIR_RATE_CODE


def counts_against_api(exc: BaseException) -> bool:
    if isinstance(exc, GraphAmbiguousOutcome):
        return True
    return isinstance(exc, GraphApiTransient) and (exc.info.code is None or exc.info.code in API_HEALTH_CODES)


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    fail_max: int = 5  # consecutive failures, fleet-wide, that open the breaker
    reset_timeout: float = 30.0  # seconds open before one probe is let through


class _StateCounts:
    """The state each breaker of this process was last seen in, counted into `BREAKERS_SEEN`."""

    STATES = (pybreaker.STATE_CLOSED, pybreaker.STATE_HALF_OPEN, pybreaker.STATE_OPEN)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: weakref.WeakKeyDictionary[pybreaker.CircuitBreaker, str] = weakref.WeakKeyDictionary()

    def note(self, breaker: pybreaker.CircuitBreaker, state: str) -> None:
        with self._lock:
            self._states[breaker] = state
            counts = {s: 0 for s in self.STATES}
            for seen in self._states.values():
                counts[seen] = counts.get(seen, 0) + 1
        for name, count in counts.items():
            BREAKERS_SEEN.labels(state=name).set(count)


_STATE_COUNTS = _StateCounts()


class _GaugeListener(pybreaker.CircuitBreakerListener):
    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        _STATE_COUNTS.note(cb, new_state.name)
        if old_state is not None:
            log.info("graph breaker %s: %s -> %s", cb.name, old_state.name, new_state.name)


@dataclass(slots=True)
class _Scope:
    label: str
    breaker: pybreaker.CircuitBreaker
    storage: pybreaker.CircuitRedisStorage
    probe_key: str
    reset_timeout: float
    quiet_keys: tuple[str, str]  # pybreaker's state and failure-counter keys


@dataclass(frozen=True, slots=True)
class Admission:
    """A call let through by both breakers: what `settle` needs to record its outcome."""

    scopes: tuple[_Scope, _Scope]
    quiet: tuple[bool, ...]
    probes: tuple[tuple[_Scope, str], ...]


class BreakerRegistry:
    """Breakers for the API and for each phone number, built lazily and kept for the process.

    Build one at process boot from a Redis client made with `decode_responses=False` (pybreaker
    decodes the bytes itself). `namespace` prefixes every key, so separate deployments (or test
    runs) sharing a Redis do not see each other's breakers.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str = breaker_keys.DEFAULT_NAMESPACE,
        number_policy: BreakerPolicy | None = None,
        api_policy: BreakerPolicy | None = None,
        probe_ttl: float = 15.0,
    ) -> None:
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("BreakerRegistry needs a Redis client with decode_responses=False")
        self._redis = redis
        self._namespace = namespace
        self._number_policy = number_policy or BreakerPolicy()
        self._api_policy = api_policy or BreakerPolicy(fail_max=20, reset_timeout=30.0)
        # Longer than a send can take (with in-call retries), or a second probe may start.
        self._probe_ttl_ms = max(1, int(probe_ttl * 1000))
        self._release_probe = redis.register_script(_RELEASE_PROBE)
        self._listener = _GaugeListener()
        self._lock = threading.Lock()
        self._numbers: dict[str, _Scope] = {}
        self._api = self._build(
            API_SCOPE, breaker_keys.scope_prefix(namespace, API_SCOPE), self._api_policy, counts_against_api
        )

    def call(self, phone_number_id: str, fn: Callable[[], T]) -> T:
        """`fn()` if both the API's and the number's breakers admit it, its outcome recorded on both.

        Raises `CircuitOpen(scope, retry_after_seconds)` without calling `fn` when either breaker
        is open (or half-open with another caller's probe in flight); otherwise returns or raises
        whatever `fn` does, unchanged.
        """
        admission = self.admit(phone_number_id)
        try:
            result = fn()
        except BaseException as exc:
            self.settle(admission, exc)
            raise
        self.settle(admission, None)
        return result

    def release(self, admission: Admission) -> None:
        """The admitted call was not made: record nothing, give back any probe lock."""
        self._release_all(admission.probes)

    def quiet_many(self, phone_number_ids: Sequence[str]) -> list[list[bool]]:
        """`quiet_from` for calls from each of these numbers, in one round trip."""
        keys = [key for number in phone_number_ids for key in self.quiet_keys(number)]
        values = self._redis.mget(keys) if keys else []
        return [self.quiet_from(values[4 * i : 4 * i + 4]) for i in range(len(phone_number_ids))]

    def quiet_keys(self, phone_number_id: str) -> list[str]:
        """The Redis keys `quiet_from` reads for a call from this number (API scope first)."""
        return [key for scope in self._scopes(phone_number_id) for key in scope.quiet_keys]

    @staticmethod
    def quiet_from(values: Sequence[object]) -> list[bool]:
        """For each scope whose `quiet_keys` values these are: closed with no failure counted."""
        closed = pybreaker.STATE_CLOSED.encode()
        return [values[i] == closed and values[i + 1] in (None, b"0") for i in range(0, len(values), 2)]

    def admit(self, phone_number_id: str, quiet: list[bool] | None = None) -> Admission:
        """The breakers' leave for one call (see `call`); `quiet` as read by the caller, if it was.

        Raises `CircuitOpen` when either breaker refuses. The admission must be `settle`d."""
        scopes = self._scopes(phone_number_id)
        was_quiet = self._quiet(scopes) if quiet is None else quiet
        probes: list[tuple[_Scope, str]] = []
        try:
            for scope, scope_quiet in zip(scopes, was_quiet, strict=True):
                token = None if scope_quiet else self._admit(scope)
                if token is not None:
                    probes.append((scope, token))
        except BaseException:
            self._release_all(probes)
            raise
        return Admission(scopes, tuple(was_quiet), tuple(probes))

    def settle(self, admission: Admission, exc: BaseException | None) -> None:
        """Record the admitted call's outcome (None: it succeeded) on both breakers."""
        try:
            probing = {scope.label for scope, _ in admission.probes}
            for scope, was_quiet in zip(admission.scopes, admission.quiet, strict=True):
                # A success on a breaker that was closed with no failures counted changes nothing.
                if exc is not None or not was_quiet:
                    self._record(scope, exc, scope.label in probing)
        finally:
            self._release_all(admission.probes)

    def state(self, phone_number_id: str | None = None) -> str:
        """'closed', 'open' or 'half-open' for a number's breaker, or the API's when None."""
        scope = self._api if phone_number_id is None else self._number(phone_number_id)
        return str(scope.breaker.state.name)

    def reset(self, phone_number_id: str | None = None) -> None:
        """Close a breaker by hand (an operator's override)."""
        scope = self._api if phone_number_id is None else self._number(phone_number_id)
        scope.breaker.close()

    # -- internals ----------------------------------------------------------------------------

    def _scopes(self, phone_number_id: str) -> tuple[_Scope, _Scope]:
        return (self._api, self._number(phone_number_id))

    def _release_all(self, probes: tuple[tuple[_Scope, str], ...] | list[tuple[_Scope, str]]) -> None:
        for scope, token in probes:
            self._release(scope, token)

    def _number(self, phone_number_id: str) -> _Scope:
        scope = self._numbers.get(phone_number_id)
        if scope is None:
            with self._lock:
                scope = self._numbers.get(phone_number_id)
                if scope is None:
                    label = breaker_keys.number_label(phone_number_id)
                    scope = self._build(
                        label,
                        breaker_keys.scope_prefix(self._namespace, label),
                        self._number_policy,
                        counts_against_number,
                    )
                    self._numbers[phone_number_id] = scope
        return scope

    def _build(
        self, label: str, key_prefix: str, policy: BreakerPolicy, counts: Callable[[BaseException], bool]
    ) -> _Scope:
        storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, self._redis, namespace=key_prefix)
        breaker = pybreaker.CircuitBreaker(
            fail_max=policy.fail_max,
            reset_timeout=policy.reset_timeout,
            exclude=[lambda exc: not counts(exc)],
            listeners=[self._listener],
            state_storage=storage,
            name=label,
            throw_new_error_on_trip=False,
        )
        _STATE_COUNTS.note(breaker, breaker.current_state)
        # pybreaker's own key layout (CircuitRedisStorage._namespace), read together by `_quiet`.
        quiet_keys = (
            breaker_keys.pybreaker_key(key_prefix, "state"),
            breaker_keys.pybreaker_key(key_prefix, "fail_counter"),
        )
        probe = breaker_keys.probe_key(key_prefix)
        return _Scope(label, breaker, storage, probe, policy.reset_timeout, quiet_keys)

    def _admit(self, scope: _Scope) -> str | None:
        """None when closed; a probe token when this caller is the fleet's one probe.

        The state is read here, not through pybreaker, which takes an unreadable state for closed:
        a Redis that cannot be asked raises, so an open breaker is never taken for a closed one
        (the send waits the outage out like any other Redis failure). A state that is gone (Redis
        lost its keys) is closed again and re-learnt: `fail_max` failures open it anew."""
        stored = self._redis.get(scope.quiet_keys[0])
        name = scope.breaker.state.name if stored is None else _decoded(stored)
        if name == pybreaker.STATE_CLOSED:
            return None
        if name == pybreaker.STATE_OPEN:
            remaining = self._remaining_open(scope)
            if remaining > 0:
                raise CircuitOpen(scope.label, remaining)
        token = uuid.uuid4().hex
        if not self._redis.set(scope.probe_key, token, nx=True, px=self._probe_ttl_ms):
            raise CircuitOpen(scope.label, self._probe_wait(scope))
        if name == pybreaker.STATE_OPEN:
            scope.breaker.half_open()
        return token

    def _remaining_open(self, scope: _Scope) -> float:
        opened_at = scope.storage.opened_at
        if opened_at is None:
            return 0.0
        elapsed = (datetime.now(UTC) - opened_at).total_seconds()
        return max(0.0, scope.reset_timeout - elapsed)

    def _probe_wait(self, scope: _Scope) -> float:
        # Soon: the probe's outcome usually lands well before its lock would expire.
        pttl = self._redis.pttl(scope.probe_key)
        remaining = pttl / 1000 if isinstance(pttl, int) and pttl > 0 else 0.0
        return max(0.1, min(remaining, 1.0))

    def _record(self, scope: _Scope, exc: BaseException | None, probe: bool) -> None:
        if exc is not None and not isinstance(exc, FleetError):
            return
        try:
            if exc is None and not probe and self._quiet((scope,))[0]:
                return  # a success on a closed breaker with no failures counted changes nothing
            if not probe and scope.breaker.current_state == pybreaker.STATE_OPEN:
                return  # another caller's verdict stands until the probe says otherwise
            scope.breaker.call(_replay, exc)
        except pybreaker.CircuitBreakerError:
            pass
        except BaseException as raised:
            if raised is not exc:
                # The caller's outcome (say, a wamid) matters more than our bookkeeping.
                log.exception("could not record a call on graph breaker %s", scope.label)

    def _quiet(self, scopes: tuple[_Scope, ...]) -> list[bool]:
        """For each scope: closed with a zero failure count. Read for all of them in one round
        trip and without pybreaker's lock: the common case, in which a caller is admitted without
        asking pybreaker (a Redis call per breaker), and in which replaying a success through
        pybreaker (lock held across three Redis calls) would serialize every send of the process
        on the API-wide breaker. Read before the call: a failure another caller records meanwhile
        is reset by the next success instead of this one, so a breaker can only open sooner."""
        return self.quiet_from(self._redis.mget([key for scope in scopes for key in scope.quiet_keys]))

    def _release(self, scope: _Scope, token: str) -> None:
        try:
            self._release_probe(keys=[scope.probe_key], args=[token])
        except Exception:
            log.exception("could not release the probe lock of graph breaker %s", scope.label)


def _decoded(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _replay(exc: BaseException | None) -> None:
    if exc is not None:
        raise exc


__all__ = ["API_SCOPE", "BREAKERS_SEEN", "Admission", "BreakerPolicy", "BreakerRegistry"]
