"""What a Redis restart (every key lost) must leave intact, judged by the fake Graph API's log.

- Pacing: in no one-second window did a number get more sends than the pacer grants over a
  window W, `mps * W + mps * burst_seconds` (workers/graph/pacing.py), across the restart too.
- Breakers: while a number's breaker is open the fake sees no call from it but the half-open
  probes (one per reset period); a breaker opened before the restart holds until then; its state
  lost with Redis is re-learnt (the number's next failures open it again) and then holds as well.
- Rate limits: the per-key window counts again (X-RateLimit-Remaining goes down).
- Live updates: a webhook stored after the restart reaches a pub/sub subscriber.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import orjson
import redis

from devkit.load import Ledger
from devkit.processes import wait_for
from services import breakers as breaker_state
from services.breaker_keys import number_label
from tests.faults.stack import SideNumber, Stack
from workers.cli import traffic

BREAKER_NAMESPACE = "adsapp:graph:breaker"
BURST_SECONDS = 1.0  # the pacer's default (OUTBOUND_PACING_BURST_SECONDS is not set by the suite)
OPEN_WINDOW_SECONDS = 6.0
GUARDED_SEND_INTERVAL = 0.4
# Sends leave at their slots, but reach the fake with a spread of their own (threads, the claim's
# transaction, the fake's event loop): on this 2-core machine a number's first second of a
# broadcast arrives as up to 144 at 60/s where the pacer granted 120. Allowed on top of a window's
# grant, as this many seconds of the number's rate.
ARRIVAL_JITTER_SECONDS = 0.5
# The paced number is offered this many sends a second (its rate is PACED_MPS).
PACED_OFFERED = 10.0


def most_in_window(times: list[float], window: float = 1.0) -> int:
    """The most timestamps that fall in any half-open interval [t, t + window)."""
    ordered = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        most = max(most, end - start + 1)
    return most


def pacing_problems(
    stack: Stack, number: str, mps: float, since: float, restart: float
) -> tuple[str, list[str]]:
    """The most sends the fake got from a number in any window of 1 s (and of 5 s) since `since`,
    against what the pacer grants over that window plus the arrival jitter allowance."""
    log = httpx.get(f"{stack.fake_url}/_fake/log", params={"phone_number_id": number}, timeout=60).json()
    times = [float(s["at"]) for s in log["sends"] if float(s["at"]) >= since]
    burst = max(1.0, mps * BURST_SECONDS)
    problems, figures = [], []
    for window in (1.0, 5.0):
        granted = int(mps * window + burst)
        most = most_in_window(times, window)
        figures.append(f"{most} in {window:g} s (pacer grants {granted})")
        if most > granted + mps * ARRIVAL_JITTER_SECONDS:
            problems.append(f"{number} got {most} sends in {window:g} s, over the {granted} its pacer grants")
    around = [sum(1 for t in times if restart + k <= t < restart + k + 1) for k in range(-3, 5)]
    return (f"{number} at {mps:g}/s: at most {', '.join(figures)}; per second from 3 s before the "
            f"restart: {around}"), problems  # fmt: skip


def calls_at_fake(stack: Stack, number: str) -> int:
    """Send requests the fake received from a number, refused ones included."""
    log = httpx.get(f"{stack.fake_url}/_fake/log", params={"summary": "1"}, timeout=60).json()
    return int(log["requests"].get("messages", {}).get(number, 0))


def breaker_open(stack: Stack, number: str) -> bool:
    client = redis.Redis.from_url(stack.redis.url, socket_timeout=2)
    try:
        label = number_label(number)
        return breaker_state.read(client, BREAKER_NAMESPACE, [label])[label].is_open
    except redis.RedisError:
        return False
    finally:
        client.close()


@dataclass
class SideSends:
    """API sends to a side number at a steady pace, written down in the phase's ledger."""

    stack: Stack
    side: SideNumber
    ledger: Ledger
    interval: float
    refused: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SideSends:
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"sends-{self.side.number}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    def _run(self) -> None:
        t = self.stack.target
        client = traffic.IngressClient(t.ingress_url, app_secret=t.app_secret, stripe_secret=t.stripe_secret)
        recipients = itertools.cycle(self.side.customers)
        try:
            while not self._stop.wait(self.interval):
                body = {"to": next(recipients), "type": "text", "text": {"body": "side"}}
                code, answer = client.send(self.side.api_key, body, uuid.uuid4().hex)
                if code == 202:
                    self.ledger.sends.append(str(answer["data"]["id"]))
                else:
                    self.refused += 1
        finally:
            client.close()


def calls_while_open(stack: Stack, number: str, seconds: float) -> tuple[int, int, list[str]]:
    """Calls the fake got from the number over `seconds` of its breaker open, and the most its
    half-open probes may account for."""
    # opened_at is kept in whole seconds, so an open period can be up to a second short.
    reset = float(stack.env["OUTBOUND_BREAKER_RESET_SECONDS"]) - 1.0
    before = calls_at_fake(stack, number)
    time.sleep(seconds)
    calls = calls_at_fake(stack, number) - before
    allowed = int(seconds // reset) + 1
    problems = [] if breaker_open(stack, number) else [f"{number}'s breaker closed while its sends failed"]
    if calls > allowed:
        problems.append(
            f"{calls} calls from {number} in {seconds:g} s of its breaker open (probes: {allowed})"
        )
    return calls, allowed, problems


def rate_limit_problems(stack: Stack) -> tuple[str, list[str]]:
    g = stack.guarded
    remaining: list[int] = []
    with httpx.Client(base_url=stack.ingress_url, timeout=10) as client:
        for _ in range(2):
            answer = client.get("/api/v1/messages", headers={"authorization": f"Bearer {g.api_key}"})
            header = answer.headers.get("x-ratelimit-remaining")
            if header is not None:
                remaining.append(int(header))
    if len(remaining) == 2 and remaining[1] < remaining[0]:
        return f"rate limit counting again ({remaining[0]} then {remaining[1]} left)", []
    return "", [f"the API rate limit did not count after the restart (remaining: {remaining})"]


def live_update_problems(stack: Stack, ledger: Ledger) -> tuple[str, list[str]]:
    g = stack.guarded
    subscriber = redis.Redis.from_url(stack.redis.url, socket_timeout=5).pubsub()
    subscriber.subscribe(f"org:{g.organization_id}")
    client = traffic.IngressClient(
        stack.ingress_url, app_secret=stack.target.app_secret, stripe_secret=stack.target.stripe_secret
    )
    try:
        message = traffic.text_message(g.customers[0], "after the restart")
        if client.webhook(traffic.delivery(g.number, g.waba_id, [message])) != 200:
            return "", ["the live-update probe webhook was refused"]
        ledger.wamids.append(message["id"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = subscriber.get_message(timeout=1.0)
            if got and got["type"] == "message" and orjson.loads(got["data"]).get("wamid") == message["id"]:
                return "live update received", []
        return "", ["no live update for a webhook stored after the restart"]
    finally:
        client.close()
        subscriber.close()


def wait_open(stack: Stack, number: str, timeout: float = 30.0) -> float | None:
    started = time.monotonic()
    if wait_for(lambda: breaker_open(stack, number), timeout, interval=0.2):
        return time.monotonic() - started
    return None
