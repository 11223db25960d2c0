"""A steady mixed load on the ingress, and the ledger of what the ingress acknowledged.

Three streams in threads: signed WhatsApp deliveries (text messages, a status now and then, images
in the media phase), signed Stripe events, and API sends; and at each phase's start a template
broadcast over the bulk API, from a tenant of its own, to a few hundred fresh recipients. Only the ingress's own answers go into
the ledger (a 200 for a webhook, a 202 for a send); the checks later compare the ledger with the
database and the fake Graph API's log, never with what the fleet says about itself.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from workers.cli import traffic


@dataclass
class Ledger:
    """Everything acknowledged during one phase."""

    wamids: list[str] = field(default_factory=list)
    statuses: list[tuple[str, str, int]] = field(default_factory=list)
    media_wamids: list[str] = field(default_factory=list)
    stripe_events: list[str] = field(default_factory=list)
    sends: list[str] = field(default_factory=list)
    bulk_jobs: list[tuple[str, int]] = field(default_factory=list)  # (job id, items it planned)
    answers: Counter[str] = field(default_factory=Counter)

    @property
    def accepted(self) -> int:
        return len(self.wamids) + len(self.statuses) + len(self.stripe_events) + len(self.sends)


@dataclass(frozen=True)
class Target:
    ingress_url: str
    app_secret: str
    stripe_secret: str
    phone_number_id: str
    waba_id: str
    api_key: str
    customers: tuple[str, ...]
    billing_org: str
    # The broadcasting tenant (empty: no broadcasts).
    bulk_api_key: str = ""
    bulk_number: str = ""
    bulk_waba: str = ""


class Load:
    """Runs while a phase is on; `ledger` is swapped per phase by `begin`."""

    def __init__(self, target: Target, *, webhook_interval: float = 0.1, send_interval: float = 0.2,
                 stripe_interval: float = 0.5) -> None:  # fmt: skip
        self.target = target
        self.intervals = {"webhooks": webhook_interval, "sends": send_interval, "stripe": stripe_interval}
        self.ledger = Ledger()
        self.media = False
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._running = threading.Event()
        self._closed = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(name,), daemon=True, name=f"load-{name}")
            for name in self.intervals
        ]
        self._stripe_clock = itertools.count(int(time.time()))
        self._recipients = itertools.count()
        for thread in self._threads:
            thread.start()

    def begin(self, *, media: bool = False) -> Ledger:
        with self._lock:
            self.ledger = Ledger()
            self.media = media
        self._running.set()
        return self.ledger

    def broadcast(self, size: int) -> int:
        """Start a broadcast to `size` recipients no earlier broadcast had; its answer's status."""
        t = self.target
        recipients = [f"1650888{next(self._recipients):05d}" for _ in range(size)]
        client = traffic.IngressClient(t.ingress_url, app_secret=t.app_secret, stripe_secret=t.stripe_secret,
                                       timeout=30.0)  # fmt: skip
        try:
            code, answer = client.bulk_job(t.bulk_api_key, traffic.broadcast(recipients), uuid.uuid4().hex)
        finally:
            client.close()
        self._note("bulk", code)
        if code == 202:
            with self._lock:
                self.ledger.bulk_jobs.append((str(answer["data"]["id"]), int(answer["data"]["total"])))
        return code

    def pause(self) -> None:
        """Stop starting requests; return once those in flight were answered and written down."""
        self._running.clear()
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=10.0)

    def close(self) -> None:
        self._closed.set()
        self._running.set()
        for thread in self._threads:
            thread.join(15)

    def _loop(self, stream: str) -> None:
        client = traffic.IngressClient(
            self.target.ingress_url,
            app_secret=self.target.app_secret,
            stripe_secret=self.target.stripe_secret,
        )
        try:
            while not self._closed.is_set():
                self._running.wait()
                if self._closed.is_set():
                    return
                with self._lock:
                    if not self._running.is_set():
                        continue
                    self._in_flight += 1
                started = time.monotonic()
                try:
                    getattr(self, f"_one_{stream}")(client)
                finally:
                    with self._lock:
                        self._in_flight -= 1
                        self._idle.notify_all()
                time.sleep(max(0.0, self.intervals[stream] - (time.monotonic() - started)))
        finally:
            client.close()

    def _note(self, stream: str, code: int) -> None:
        with self._lock:
            self.ledger.answers[f"{stream}:{code}"] += 1

    def _one_webhooks(self, client: traffic.IngressClient) -> None:
        t = self.target
        sender = random.choice(t.customers)
        messages = [
            traffic.text_message(sender, f"hello {uuid.uuid4().hex[:8]}") for _ in range(random.randint(1, 2))
        ]
        media = self.media
        if media:
            messages.append(traffic.image_message(sender, f"img-{uuid.uuid4().hex[:12]}"))
        statuses = []
        if random.random() < 0.5:
            # A status for a message this ledger never sent: it is kept, waiting for its message.
            statuses.append(traffic.status(traffic.wamid(), "delivered", sender, int(time.time())))
        ledger = self.ledger
        code = client.webhook(traffic.delivery(t.phone_number_id, t.waba_id, messages, statuses))
        self._note("webhook", code)
        if code == 200:
            with self._lock:
                for m in messages:
                    (ledger.media_wamids if m["type"] == "image" else ledger.wamids).append(m["id"])
                ledger.statuses.extend((s["id"], s["status"], int(s["timestamp"])) for s in statuses)

    def _one_stripe(self, client: traffic.IngressClient) -> None:
        event = traffic.subscription_event(self.target.billing_org, next(self._stripe_clock))
        ledger = self.ledger
        code = client.stripe(event)
        self._note("stripe", code)
        if code == 200:
            with self._lock:
                ledger.stripe_events.append(event["id"])

    def _one_sends(self, client: traffic.IngressClient) -> None:
        t = self.target
        body = {"to": random.choice(t.customers), "type": "text", "text": {"body": "your order shipped"}}
        ledger = self.ledger
        code, answer = client.send(t.api_key, body, idempotency_key=uuid.uuid4().hex)
        self._note("send", code)
        if code == 202:
            with self._lock:
                ledger.sends.append(str(answer["data"]["id"]))
