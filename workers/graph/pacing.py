"""Fleet-wide send pacing in Redis: send slots per phone number, a token bucket per recipient pair.

Meta meters throughput per business number (80 messages/s by default, 1,000 after its upgrade,
20 for numbers shared with the WhatsApp Business app) and answers 130429 past it; it also limits
how fast one number may message one user (about one message every 6 s, error 131056). Both limits
are kept here, before the call, so bulk sends run at the allowed pace instead of discovering it.

- Number: one schedule of send slots (GCRA: a theoretical arrival time, `1 / mps` apart, at most
  `mps * burst_seconds` slots ahead of now; the same limit as a token bucket of that size). Over
  any window W a number is granted at most `mps * W + burst`, whichever call takes its slots:
  `acquire` and `wait_for_token` (a slot due now) and `reserve_many` (a slot up to a wait ahead)
  share one key per number, so a number has one budget however its sends are paced.
- Pair bucket (number, recipient): refills at `pair_rate` per second (default 1/6), holds at most
  `pair_burst` tokens (default 10), so a conversation can have a quick exchange of a few messages
  but a recipient is never flooded.

One Lua script checks and takes both, a slot and a pair token, atomically (neither is taken
unless both are there) using the Redis server's clock (`TIME`), so every process on every host
agrees on time. A bucket's key expires once it would be full again: absent means full. Keys of a
number share a hash tag, so the script also runs on Redis Cluster.

Redis losing its keys (a restart without persistence, a failover) must not hand a busy number a
fresh burst on top of the slots it was granted up to `max_wait` ahead: each process remembers the
schedule (theoretical arrival time) each number had at its last reservation and passes it along,
and the script never starts a schedule earlier than that. So after a loss a number resumes where
the fleet's last known schedule ended; only grants made since a process's last call for the
number, and the recipients' pair buckets, start afresh.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis import Redis
from redis.exceptions import NoScriptError

from domain.errors import PacingDeferred

DEFAULT_PAIR_RATE = 1 / 6
DEFAULT_PAIR_BURST = 10.0

# Several sends of one number at once, each given a slot (GCRA: a theoretical arrival time per
# number, `rate` apart, up to `burst` ahead of now) and its recipient's pair token, or the wait for
# whichever it lacks (and nothing taken). A slot is a time to send at: a sender that is late to
# its slot costs the number nothing, unlike a bucket that is polled and overflows meanwhile.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function level(key, rate, burst)
  local v = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens, ts = tonumber(v[1]), tonumber(v[2])
  if tokens == nil or ts == nil then return burst end
  local elapsed = now - ts
  if elapsed < 0 then elapsed = 0 end
  tokens = tokens + elapsed * rate / 1000000
  if tokens > burst then tokens = burst end
  return tokens
end

local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local prate, pburst = tonumber(ARGV[3]), tonumber(ARGV[4])
local interval = 1000000 / rate
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
-- The schedule the caller last saw: later than the stored one only if Redis lost the key.
local known = tonumber(ARGV[5])
if tat < known then tat = known end
if tat < now then tat = now end
local out = {}
local k = 1
for i = 6, #ARGV, 2 do
  local max_wait = tonumber(ARGV[i])
  local pair = nil
  local p = pburst
  if ARGV[i + 1] == '1' then
    k = k + 1
    pair = KEYS[k]
    p = level(pair, prate, pburst)
  end
  local at = tat + interval - burst * interval
  if p < 1 then
    out[#out + 1] = math.ceil((1 - p) * 1000000 / prate)
    out[#out + 1] = 2
  elseif at - now > max_wait then
    out[#out + 1] = math.ceil(at - now)
    out[#out + 1] = 1
  else
    tat = tat + interval
    if pair then
      redis.call('HSET', pair, 'tokens', string.format('%.6f', p - 1), 'ts', string.format('%.0f', now))
      redis.call('PEXPIRE', pair, math.ceil(pburst / prate * 1000) + 1000)
    end
    local wait = at - now
    if wait < 0 then wait = 0 end
    out[#out + 1] = math.ceil(wait)
    out[#out + 1] = 0
  end
end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
out[#out + 1] = string.format('%.0f', tat)
out[#out + 1] = string.format('%.0f', now)
return out
"""

# Numbers whose last known schedule is kept per process before the ones already due are dropped.
_KNOWN_PRUNE_AT = 4096

_REASONS = {1: "throughput", 2: "pair rate"}


class Pacer:
    """Build one per process at boot; thread-safe (each call is one script run)."""

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str = "adsapp:graph:pace",
        burst_seconds: float = 1.0,
        pair_rate: float = DEFAULT_PAIR_RATE,
        pair_burst: float = DEFAULT_PAIR_BURST,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if burst_seconds <= 0 or pair_rate <= 0 or pair_burst < 1:
            raise ValueError("burst_seconds and pair_rate must be positive and pair_burst at least 1")
        self._namespace = namespace
        self._burst_seconds = burst_seconds
        self._pair_rate = pair_rate
        self._pair_burst = pair_burst
        self._sleep = sleep
        self._redis = redis
        self._reserve = redis.register_script(_RESERVE)
        self._known_lock = threading.Lock()
        self._known: dict[str, int] = {}  # number -> its schedule (µs, Redis clock) at the last call

    @property
    def burst_seconds(self) -> float:
        """A number's bucket holds this many seconds of its rate."""
        return self._burst_seconds

    def acquire(self, phone_number_id: str, mps: float, recipient: str | None = None) -> float:
        """Take a send token: 0.0 when granted, else the seconds until one may be (nothing taken)."""
        return self._try(phone_number_id, mps, recipient)[0]

    def wait_for_token(
        self, phone_number_id: str, mps: float, recipient: str | None = None, *, max_wait: float = 2.0
    ) -> float:
        """Block until a token is granted and return the seconds spent waiting.

        Raises `PacingDeferred(retry_after_seconds)` as soon as it is clear the token would take
        longer than `max_wait`, so the caller can re-enqueue with that delay instead of holding a
        worker thread (a recipient's pair limit can mean several seconds).
        """
        started = time.monotonic()
        while True:
            wait, reason = self._try(phone_number_id, mps, recipient)
            waited = time.monotonic() - started
            if wait == 0.0:
                return waited
            if waited + wait > max_wait:
                raise PacingDeferred(wait, reason)
            # A little jitter so the threads that lost the same token do not all wake together.
            self._sleep(wait * (1.0 + 0.1 * random.random()))

    def reserve_many(
        self, phone_number_id: str, mps: float, sends: Sequence[tuple[str | None, float]]
    ) -> list[tuple[bool, float, str]]:
        """Slots for sends (recipient, the longest it may wait in seconds) of one number, in order.

        For each: (True, seconds until its slot, "") when it has a slot and its pair token, to
        send once that time has passed; else (False, seconds until it might, "throughput" or
        "pair rate") with nothing taken. Over any window W the slots given are at most
        `mps * W + mps * burst_seconds`, `acquire`'s grants included (the same slots).
        """
        return self.reserve_for_numbers([(phone_number_id, mps, sends)])[0]

    def reserve_for_numbers(
        self, numbers: Sequence[tuple[str, float, Sequence[tuple[str | None, float]]]]
    ) -> list[list[tuple[bool, float, str]]]:
        """`reserve_many` for several numbers (phone_number_id, mps, sends) in one round trip; a
        send without a recipient (None) takes a slot and no pair token."""
        with self._known_lock:
            known = [self._known.get(number, 0) for number, _, _ in numbers]
        calls: list[tuple[list[str], list[float | int]]] = []
        for (phone_number_id, mps, sends), schedule in zip(numbers, known, strict=True):
            if mps <= 0:
                raise ValueError(f"mps must be positive, got {mps}")
            tag = f"{self._namespace}:{{{phone_number_id}}}"
            keys = [f"{tag}:slots", *(f"{tag}:pair:{r}" for r, _ in sends if r is not None)]
            args = [mps, max(1.0, mps * self._burst_seconds), self._pair_rate, self._pair_burst, schedule]
            for recipient, wait in sends:
                args += [max(0.0, wait) * 1_000_000, 0 if recipient is None else 1]
            calls.append((keys, args))
        answers = []
        schedules: list[tuple[str, int, int]] = []
        for (phone_number_id, _, _), flat in zip(numbers, self._run_reserves(calls), strict=True):
            schedules.append((phone_number_id, int(flat[-2]), int(flat[-1])))
            codes = [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat) - 2, 2)]
            answers.append([(code == 0, us / 1_000_000, _REASONS.get(code, "")) for us, code in codes])
        self._remember(schedules)
        return answers

    def _run_reserves(
        self, calls: Sequence[tuple[list[str], list[float | int]]], *, reload: bool = True
    ) -> list[Any]:
        """The reserve script for each call, in one pipeline, by its SHA: redis-py runs a
        registered script in a pipeline only after a SCRIPT EXISTS, a second round trip for every
        batch. When Redis lost the script (a restart, SCRIPT FLUSH), it is loaded again and the
        calls it refused run again, only those: the others took their slots already."""
        pipe = self._redis.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(self._reserve.sha, len(keys), *keys, *args)
        results: list[Any] = pipe.execute(raise_on_error=False)
        refused = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if refused and reload:
            self._redis.script_load(_RESERVE)
            again = self._run_reserves([calls[i] for i in refused], reload=False)
            for i, result in zip(refused, again, strict=True):
                results[i] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    def _remember(self, schedules: Sequence[tuple[str, int, int]]) -> None:
        with self._known_lock:
            for number, tat, _ in schedules:
                self._known[number] = max(tat, self._known.get(number, 0))
            if len(self._known) > _KNOWN_PRUNE_AT and schedules:
                now = max(now for _, _, now in schedules)
                self._known = {n: t for n, t in self._known.items() if t > now}

    def _try(self, phone_number_id: str, mps: float, recipient: str | None) -> tuple[float, str]:
        """A slot due now (and the pair token), or the wait until one might be (nothing taken)."""
        [(granted, wait, reason)] = self.reserve_many(phone_number_id, mps, [(recipient, 0.0)])
        return (0.0, "") if granted else (wait, reason)
