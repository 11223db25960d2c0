"""Fleet-wide send pacing in Redis: a token bucket per phone number, and one per recipient pair.

Meta meters throughput per business number (80 messages/s by default, 1,000 after its upgrade,
20 for numbers shared with the WhatsApp Business app) and answers 130429 past it; it also limits
how fast one number may message one user (about one message every 6 s, error 131056). Both limits
are kept here, before the call, so bulk sends run at the allowed pace instead of discovering it.

- Number bucket: refills at the number's `mps`, holds at most `mps * burst_seconds` tokens
  (default one second's worth). Over any window W a number is granted at most `mps * W + burst`.
- Pair bucket (number, recipient): refills at `pair_rate` per second (default 1/6), holds at most
  `pair_burst` tokens (default 10), so a conversation can have a quick exchange of a few messages
  but a recipient is never flooded.

One Lua script checks and takes both tokens atomically (no token is taken from either bucket
unless both have one) using the Redis server's clock (`TIME`), so every process on every host
agrees on time. A bucket's key expires once it would be full again: absent means full. Keys of a
number share a hash tag, so the script also runs on Redis Cluster.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from redis import Redis

from domain.errors import PacingDeferred

DEFAULT_PAIR_RATE = 1 / 6
DEFAULT_PAIR_BURST = 10.0

# Both scripts read the server's clock and keep token buckets the same way: `level` is a bucket's
# tokens now (absent: full), `take` spends one and lets the key expire once it would be full again.
_BUCKETS = """
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

local function take(key, tokens, rate, burst)
  redis.call('HSET', key, 'tokens', string.format('%.6f', tokens - 1), 'ts', string.format('%.0f', now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
end
"""

_ACQUIRE = (
    _BUCKETS
    + """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local n = level(KEYS[1], rate, burst)
local wait, reason = 0, 0
if n < 1 then wait, reason = (1 - n) * 1000000 / rate, 1 end

local p, prate, pburst
if #KEYS > 1 then
  prate, pburst = tonumber(ARGV[3]), tonumber(ARGV[4])
  p = level(KEYS[2], prate, pburst)
  if p < 1 then
    local pw = (1 - p) * 1000000 / prate
    if pw > wait then wait, reason = pw, 2 end
  end
end

if wait > 0 then return {math.ceil(wait), reason} end
take(KEYS[1], n, rate, burst)
if #KEYS > 1 then take(KEYS[2], p, prate, pburst) end
return {0, 0}
"""
)

# Several sends of one number at once, each given a slot (GCRA: a theoretical arrival time per
# number, `rate` apart, up to `burst` ahead of now) and its recipient's pair token, or the wait for
# whichever it lacks (and nothing taken). A slot is a time to send at: a sender that is late to
# its slot costs the number nothing, unlike a bucket that is polled and overflows meanwhile.
_RESERVE = (
    _BUCKETS
    + """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local prate, pburst = tonumber(ARGV[3]), tonumber(ARGV[4])
local interval = 1000000 / rate
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local out = {}
for i = 2, #KEYS do
  local max_wait = tonumber(ARGV[3 + i])
  local p = level(KEYS[i], prate, pburst)
  local at = tat + interval - burst * interval
  if p < 1 then
    out[#out + 1] = math.ceil((1 - p) * 1000000 / prate)
    out[#out + 1] = 2
  elseif at - now > max_wait then
    out[#out + 1] = math.ceil(at - now)
    out[#out + 1] = 1
  else
    tat = tat + interval
    take(KEYS[i], p, prate, pburst)
    local wait = at - now
    if wait < 0 then wait = 0 end
    out[#out + 1] = math.ceil(wait)
    out[#out + 1] = 0
  end
end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return out
"""
)

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
        self._script = redis.register_script(_ACQUIRE)
        self._redis = redis
        self._reserve = redis.register_script(_RESERVE)

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
        self, phone_number_id: str, mps: float, sends: list[tuple[str, float]]
    ) -> list[tuple[bool, float, str]]:
        """Slots for sends (recipient, the longest it may wait in seconds) of one number, in order.

        For each: (True, seconds until its slot, "") when it has a slot and its pair token, to
        send once that time has passed; else (False, seconds until it might, "throughput" or
        "pair rate") with nothing taken. Over any window W the slots given are at most
        `mps * W + mps * burst_seconds`. The number's slots are kept apart from `acquire`'s bucket
        (use one of the two for a number); the pair buckets are the same.
        """
        return self.reserve_for_numbers([(phone_number_id, mps, sends)])[0]

    def reserve_for_numbers(
        self, numbers: list[tuple[str, float, list[tuple[str, float]]]]
    ) -> list[list[tuple[bool, float, str]]]:
        """`reserve_many` for several numbers (phone_number_id, mps, sends) in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for phone_number_id, mps, sends in numbers:
            tag = self._tag(phone_number_id, mps)
            keys = [f"{tag}:slots", *(f"{tag}:pair:{recipient}" for recipient, _ in sends)]
            args = [mps, max(1.0, mps * self._burst_seconds), self._pair_rate, self._pair_burst]
            args += [max(0.0, wait) * 1_000_000 for _, wait in sends]
            self._reserve(keys=keys, args=args, client=pipe)
        answers = []
        for flat in pipe.execute():
            codes = [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]
            answers.append([(code == 0, us / 1_000_000, _REASONS.get(code, "")) for us, code in codes])
        return answers

    def _tag(self, phone_number_id: str, mps: float) -> str:
        """The hash tag of the number's keys (one Cluster slot), once its rate is known to be valid."""
        if mps <= 0:
            raise ValueError(f"mps must be positive, got {mps}")
        return f"{self._namespace}:{{{phone_number_id}}}"

    def _try(self, phone_number_id: str, mps: float, recipient: str | None) -> tuple[float, str]:
        tag = self._tag(phone_number_id, mps)
        keys = [f"{tag}:rate"]
        args: list[float] = [mps, max(1.0, mps * self._burst_seconds)]
        if recipient is not None:
            keys.append(f"{tag}:pair:{recipient}")
            args += [self._pair_rate, self._pair_burst]
        wait_us, reason = self._script(keys=keys, args=args)
        return int(wait_us) / 1_000_000, _REASONS.get(int(reason), "throughput")
