"""The ports of `workers.outbound.ports` over the fleet's real adapters (`workers.graph`).

- `ThreadedSender`: a blocking Graph client (`GraphClient.send_message`) run in a worker thread.
- `FleetBreakers`: the Redis-backed `BreakerRegistry`. The common case (both breakers closed with
  no failure counted) costs one MGET shared by every send that asks at the same moment; anything
  else (probes, failures) goes through the registry as it is, in a worker thread.
- `FleetPacer`: the Redis token buckets of `Pacer`. The sends of one number waiting in a process
  queue in line and take their tokens together (one script run per batch), so hundreds of waiting
  sends do not each poll Redis.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from domain.errors import PacingDeferred
from workers.graph.breaker import Admission, BreakerRegistry
from workers.graph.models import SendResult
from workers.graph.pacing import Pacer
from workers.outbound.coalesce import Coalescer

# Tokens asked for at once per number: a second's worth at 1,000 mps is a few of these.
_PACE_BATCH = 200


class BlockingSender(Protocol):
    def send_message(
        self, phone_number_id: str, access_token: str, payload: dict[str, Any]
    ) -> SendResult: ...


class ThreadedSender:
    def __init__(self, client: BlockingSender) -> None:
        self._client = client

    async def send(self, phone_number_id: str, access_token: str, payload: Mapping[str, Any]) -> SendResult:
        return await asyncio.to_thread(
            self._client.send_message, phone_number_id, access_token, dict(payload)
        )


class _Ticket:
    def __init__(self, registry: BreakerRegistry, admission: Admission, quiet: bool) -> None:
        self._registry = registry
        self._admission = admission
        self._quiet = quiet

    async def settle(self, failure: BaseException | None) -> None:
        if failure is None and self._quiet:
            return  # a success on quiet breakers changes nothing
        await asyncio.to_thread(self._registry.settle, self._admission, failure)

    async def release(self) -> None:
        if self._admission.probes:
            await asyncio.to_thread(self._registry.release, self._admission)


class FleetBreakers:
    def __init__(self, registry: BreakerRegistry) -> None:
        self._registry = registry
        self._quiet: Coalescer[str, list[bool]] = Coalescer(self._registry.quiet_many)

    async def admit(self, phone_number_id: str) -> _Ticket:
        quiet = await self._quiet.submit(phone_number_id)
        if all(quiet):  # both closed with nothing counted: admitted without asking Redis again
            return _Ticket(self._registry, self._registry.admit(phone_number_id, quiet), True)
        admission = await asyncio.to_thread(self._registry.admit, phone_number_id, quiet)
        return _Ticket(self._registry, admission, False)


@dataclass(slots=True)
class _Waiter:
    recipient: str
    deadline: float
    future: asyncio.Future[tuple[float, str]]


@dataclass(slots=True)
class _Lane:
    mps: float
    waiters: deque[_Waiter] = field(default_factory=deque)
    running: bool = False


class FleetPacer:
    def __init__(self, pacer: Pacer, clock: Callable[[], float] = time.monotonic) -> None:
        self._pacer = pacer
        self._clock = clock
        self._lanes: dict[str, _Lane] = {}

    async def take(self, phone_number_id: str, mps: float, recipient: str, max_wait: float) -> None:
        while True:
            started = self._clock()
            future: asyncio.Future[tuple[float, str]] = asyncio.get_running_loop().create_future()
            lane = self._lanes.get(phone_number_id)
            if lane is None:
                lane = self._lanes[phone_number_id] = _Lane(mps)
            lane.mps = mps
            lane.waiters.append(_Waiter(recipient, started + max_wait, future))
            if not lane.running:
                lane.running = True
                asyncio.get_running_loop().create_task(self._serve(phone_number_id, lane))
            wait, reason = await future
            if wait == 0.0:
                return
            # Only a recipient's pair limit comes back here: wait it out if it is short.
            if wait > max_wait - (self._clock() - started):
                raise PacingDeferred(wait, reason)
            await asyncio.sleep(wait * (1.0 + 0.1 * random.random()))
            max_wait -= self._clock() - started

    async def _serve(self, phone_number_id: str, lane: _Lane) -> None:
        """Hand out the number's tokens to its waiting sends in order, a batch per script run."""
        try:
            while lane.waiters:
                batch = [lane.waiters[i] for i in range(min(len(lane.waiters), _PACE_BATCH))]
                try:
                    answers = await asyncio.to_thread(
                        self._pacer.acquire_many, phone_number_id, lane.mps, [w.recipient for w in batch]
                    )
                except Exception as exc:
                    for waiter in batch:
                        lane.waiters.remove(waiter)
                        if not waiter.future.done():
                            waiter.future.set_exception(exc)
                    continue
                short = 0.0
                now = self._clock()
                for waiter, (wait, reason) in zip(batch, answers, strict=True):
                    if wait == 0.0 or reason != "throughput" or now + wait > waiter.deadline:
                        lane.waiters.remove(waiter)
                        _answer(waiter, (wait, reason))
                    else:
                        short = wait if short == 0.0 else min(short, wait)
                if short > 0.0:
                    # Out of tokens: come back for a few at once (up to 50 ms of the number's
                    # rate) rather than one per script run.
                    await asyncio.sleep(max(short, min(len(lane.waiters), lane.mps * 0.05) / lane.mps))
        finally:
            lane.running = False


def _answer(waiter: _Waiter, answer: tuple[float, str]) -> None:
    if not waiter.future.done():
        waiter.future.set_result(answer)
