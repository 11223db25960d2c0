"""The ports of `workers.outbound.ports` over the fleet's real adapters (`workers.graph`).

- `ThreadedSender`: a blocking Graph client (`GraphClient.send_message`) run in a worker thread.
- `FleetBreakers`: the Redis-backed `BreakerRegistry`. The common case (both breakers closed with
  no failure counted) costs one MGET shared by every send that asks at the same moment; anything
  else (probes, failures) goes through the registry as it is, in a worker thread.
- `FleetPacer`: the fleet-wide pacing of `Pacer`. The sends of one number asking at the same
  moment get their send slots together (one script run), then each sleeps until its slot, so
  hundreds of waiting sends do not each poll Redis.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from domain.errors import PacingDeferred
from workers.graph.breaker import Admission, BreakerRegistry
from workers.graph.models import SendResult
from workers.graph.pacing import Pacer
from workers.outbound.coalesce import Coalescer


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


Ask = tuple[str, float, str, float]  # (number, mps, recipient, seconds it may wait)


class FleetPacer:
    """The sends asking at the same moment get their slots in one round trip (a script run per
    number); each then sleeps until its slot, so no send polls Redis while it waits."""

    def __init__(self, pacer: Pacer) -> None:
        self._pacer = pacer
        self._asks: Coalescer[Ask, tuple[bool, float, str]] = Coalescer(self._reserve)

    def _reserve(self, asks: Sequence[Ask]) -> list[tuple[bool, float, str]]:
        positions: dict[str, list[int]] = {}
        for i, (number, _, _, _) in enumerate(asks):
            positions.setdefault(number, []).append(i)
        groups = [
            (number, asks[at[-1]][1], [(asks[i][2], asks[i][3]) for i in at])
            for number, at in positions.items()
        ]
        answers: list[tuple[bool, float, str]] = [(False, 0.0, "")] * len(asks)
        for at, got in zip(positions.values(), self._pacer.reserve_for_numbers(groups), strict=True):
            for i, answer in zip(at, got, strict=True):
                answers[i] = answer
        return answers

    async def take(self, phone_number_id: str, mps: float, recipient: str, max_wait: float) -> None:
        deadline = time.monotonic() + max_wait
        while True:
            left = deadline - time.monotonic()
            ask = (phone_number_id, mps, recipient, max(0.0, left))
            granted, wait, reason = await self._asks.submit(ask)
            if granted:
                if wait > 0:
                    await asyncio.sleep(wait)
                return
            # Only a recipient's pair limit is worth waiting out here, if it is short.
            if reason != "pair rate" or wait > deadline - time.monotonic():
                raise PacingDeferred(wait, reason)
            await asyncio.sleep(wait * (1.0 + 0.1 * random.random()))
