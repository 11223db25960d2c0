"""`adsapp demo`: the fleet under realistic traffic, a Graph API outage and a worker kill, live.

Starts every Procfile line and the fake Graph API on free ports against the configured Postgres,
RabbitMQ and Redis, makes two tenants, streams signed webhooks and API sends for both, runs a
template broadcast over the bulk API for the first (its progress in the view), injects a
30 s-scale Graph outage a third of the way in and kills the outbound workers with SIGKILL two
thirds in (restarting them, as a supervisor would), and shows rates, queue depths, breaker states
and dead letters in a live view. It ends with a summary (accepted, stored, sent, duplicates, lost;
and the broadcast's items) counted from the database and the fake's own log, and stops everything
it started, on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from config import Settings, get_settings
from db import admin
from db.engine import create_db_engine
from db.repos import demo_counts as audit
from db.repos import organizations as orgs
from db.repos import templates
from db.uow import UnitOfWork
from domain.apikeys import generate_key
from workers.cli import traffic
from workers.cli.fleetenv import free_port, queue_depths, wait_until
from workers.cli.procfile import ChildProcess, Fleet, ProcfileLine, read_procfile

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

ROOT = Path(__file__).resolve().parents[2]
QUEUES = ("inbound", "outbound", "billing", "media")
# The fake Graph API accepts any token but its configured bad ones.
DEMO_TOKEN = "demo-token"  # noqa: S105
BROADCAST_SCOPES = ("messages:write", "messages:read", "bulk:write", "bulk:read")
JOB_FINAL = ("completed", "completed_with_errors", "failed", "cancelled")


def register(commands: Commands) -> None:
    demo = commands.add_parser("demo", help="run the fleet under traffic and faults, with a live view")
    demo.add_argument("--seconds", type=float, default=90.0, help="length of the traffic (default 90)")
    demo.add_argument("--short", action="store_true", help="a 24 s run (for tests and a quick look)")
    demo.add_argument("--broadcast", type=int, default=None, metavar="N",
                      help="recipients of the broadcast (default 200, 60 with --short)")  # fmt: skip
    demo.set_defaults(handler=_demo)


@dataclass
class DemoTenant:
    name: str
    organization_id: str
    phone_number_id: str
    waba_id: str
    api_key: str
    customers: tuple[str, ...]


@dataclass
class Broadcast:
    """The demo's bulk job, as the API answered it."""

    size: int
    code: int = 0
    job_id: str = ""
    total: int = 0
    progress: dict[str, Any] = field(default_factory=dict)


@dataclass
class Tally:
    wamids: list[str] = field(default_factory=list)
    sends: list[str] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    events: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _make_tenant(settings: Settings, name: str, *, broadcasts: bool = False) -> DemoTenant:
    """A tenant with one number and an API key; one that `broadcasts` is on a plan with bulk
    sending and has the broadcast template approved."""
    tag = uuid.uuid4().hex[:8]
    key = generate_key()
    engine = create_db_engine(settings, pool_size=1)
    try:
        with UnitOfWork(engine, system=True) as uow:
            org = orgs.create_organization(uow.conn, f"{name} {tag}")
            pnid = f"demo-{tag}"
            orgs.add_number(uow.conn, org, phone_number_id=pnid, display_phone_number=f"1555{tag[:6]}",
                            waba_id=f"waba-{tag}", access_token=DEMO_TOKEN, mps=80)  # fmt: skip
            scopes = BROADCAST_SCOPES if broadcasts else ("messages:write", "messages:read")
            orgs.add_api_key(uow.conn, org, "demo", key, scopes)
            if broadcasts:
                orgs.set_plan(uow.conn, org, "enterprise")
            uow.commit()
        if broadcasts:
            with UnitOfWork(engine, organization_id=org) as uow:
                templates.upsert(uow.conn, org, f"waba-{tag}", [traffic.BROADCAST_TEMPLATE])
                uow.commit()
    finally:
        engine.dispose()
    customers = tuple(f"1650{int(tag, 16) % 10**4:04d}{n:03d}" for n in range(20))
    return DemoTenant(name, str(org), pnid, f"waba-{tag}", key.plaintext, customers)


def _own_metrics_ports(_name: str) -> dict[str, str]:
    # Free ports for every process's metrics: another fleet on this machine may hold the defaults.
    port = str(free_port())
    return {"dramatiq_prom_port": port, "INGRESS_METRICS_PORT": port, "SCHEDULER_METRICS_PORT": port}


class Demo:
    def __init__(self, settings: Settings, seconds: float, broadcast_size: int = 200) -> None:
        self.settings = settings
        self.seconds = seconds
        self.broadcast = Broadcast(broadcast_size)
        self.root = Path(tempfile.mkdtemp(prefix="adsapp-demo-"))
        self.port, self.fake_port = free_port(), free_port()
        self.ingress = f"http://127.0.0.1:{self.port}"
        self.fake_url = f"http://127.0.0.1:{self.fake_port}"
        self.secret = settings.whatsapp_app_secret[0].get_secret_value()
        env = {**os.environ, "PORT": str(self.port), "FAKE_GRAPH_PORT": str(self.fake_port),
               "GRAPH_API_URL": self.fake_url, "METRICS_DIR": str(self.root / "prometheus"),
               "MEDIA_DIR": str(self.root / "media"), "LOG_LEVEL": "WARNING", "WEB_CONCURRENCY": "1",
               "OUTBOUND_BREAKER_RESET_SECONDS": "5", "OUTBOUND_SEND_LEASE_SECONDS": "15"}  # fmt: skip
        self.fleet = Fleet(read_procfile(ROOT / "Procfile"), cwd=ROOT, env=env, log_dir=self.root / "logs",
                           per_process_env=_own_metrics_ports)  # fmt: skip
        self.fake = ChildProcess(
            ProcfileLine("fake-graph", f".venv/bin/adsapp fake-graph --port {self.fake_port} "
                         f"--webhook-url {self.ingress}/webhooks/whatsapp"),
            ROOT, env, self.root / "logs" / "fake-graph.log",
        )  # fmt: skip
        self.tally = Tally()
        self.stop_traffic = threading.Event()
        self.tenants: list[DemoTenant] = []
        self.phase = "starting"
        self.started = time.monotonic()
        self.broadcast_line = ""

    def start(self, console: Console) -> None:
        console.print("[bold]adsapp demo[/]: migrating, starting the fleet and the fake Graph API …")
        admin.ensure_database(self.settings)
        admin.upgrade(self.settings)
        self.fake.start()
        if not wait_until(self._fake_up, 60):
            raise RuntimeError("the fake Graph API did not start; logs in " + str(self.root / "logs"))
        self.tenants = [
            _make_tenant(self.settings, "Acme", broadcasts=True),
            _make_tenant(self.settings, "Globex"),
        ]
        # Listed at the fake before the scheduler starts: its template sync follows the listing.
        httpx.post(f"{self.fake_url}/_fake/templates", timeout=10,
                   json={"waba_id": self.tenants[0].waba_id, "templates": [traffic.BROADCAST_TEMPLATE]},
                   ).raise_for_status()  # fmt: skip
        self.fleet.start()
        if not wait_until(self._ready, 90):
            raise RuntimeError("the fleet did not become ready; logs in " + str(self.root / "logs"))

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.ingress}/readyz", timeout=2).status_code == 200 and self._fake_up()
        except httpx.HTTPError:
            return False

    def _fake_up(self) -> bool:
        try:
            return httpx.get(f"{self.fake_url}/_fake/log?summary=1", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _client(self) -> traffic.IngressClient:
        return traffic.IngressClient(
            self.ingress,
            app_secret=self.secret,
            stripe_secret=self.settings.stripe_webhook_secret[0].get_secret_value(),
            timeout=30.0,
        )

    def start_broadcast(self) -> None:
        """The first tenant's template broadcast to recipients of its own, over the public API."""
        tenant, b = self.tenants[0], self.broadcast
        recipients = [f"1651{int(tenant.waba_id[-8:], 16) % 10**4:04d}{n:04d}" for n in range(b.size)]
        client = self._client()
        try:
            b.code, answer = client.bulk_job(tenant.api_key, traffic.broadcast(recipients), uuid.uuid4().hex)
        finally:
            client.close()
        if b.code == 202:
            b.job_id, b.total = str(answer["data"]["id"]), int(answer["data"]["total"])
            self.event(f"broadcast to {b.total} recipients started ({tenant.name}, bulk job {b.job_id[:8]})")
        else:
            self.event(f"broadcast refused: HTTP {b.code} {answer.get('error', '')}")

    def broadcast_progress(self) -> str:
        b = self.broadcast
        if not b.job_id:
            return "not started" if b.code == 0 else f"refused (HTTP {b.code})"
        client = self._client()
        try:
            code, answer = client.api("GET", f"/api/v1/bulk-jobs/{b.job_id}", self.tenants[0].api_key)
        finally:
            client.close()
        if code == 200:
            b.progress = answer["data"]
        if not b.progress:
            return f"HTTP {code}"
        c = b.progress["counts"]
        return (f"{b.progress['status']}: {c['succeeded']} sent, {c['failed']} failed, "
                f"{c['pending']} pending of {c['total']}")  # fmt: skip

    def stop(self) -> None:
        self.stop_traffic.set()
        self.fleet.stop()
        self.fake.stop()

    def run_traffic(self) -> None:
        client = self._client()
        n = 0
        try:
            # Each customer writes first, which opens the 24-hour window the replies need.
            for tenant in self.tenants:
                for customer in tenant.customers:
                    self._webhook(client, tenant, customer)
            first = list(self.tally.wamids)
            wait_until(lambda: self.stop_traffic.is_set() or len(self._stored(first)) == len(first), 30, 0.5)
            while not self.stop_traffic.is_set():
                tenant = self.tenants[n % 2]
                customer = tenant.customers[n % len(tenant.customers)]
                self._webhook(client, tenant, customer)
                if n % 2 == 0:
                    self._send(client, tenant, customer)
                n += 1
                time.sleep(0.1)
        finally:
            client.close()

    def _webhook(self, client: traffic.IngressClient, tenant: DemoTenant, customer: str) -> None:
        message = traffic.text_message(customer, "Hi! Is my order on its way? 📦")
        code = client.webhook(traffic.delivery(tenant.phone_number_id, tenant.waba_id, [message]))
        with self.tally.lock:
            self.tally.answers[f"webhook {code}"] += 1
            if code == 200:
                self.tally.wamids.append(message["id"])

    def _send(self, client: traffic.IngressClient, tenant: DemoTenant, customer: str) -> None:
        body = {"to": customer, "type": "text", "text": {"body": f"Yes, it ships today ({tenant.name})"}}
        code, answer = client.send(tenant.api_key, body, uuid.uuid4().hex)
        with self.tally.lock:
            self.tally.answers[f"send {code}"] += 1
            if code == 202:
                self.tally.sends.append(str(answer["data"]["id"]))

    def fake_log(self) -> dict[str, Any]:
        try:
            body: dict[str, Any] = httpx.get(f"{self.fake_url}/_fake/log", timeout=10).json()
            return body
        except httpx.HTTPError:
            return {"total": 0, "duplicates": [], "counts": []}

    def event(self, text: str) -> None:
        self.phase = text
        self.tally.events.append(f"t+{time.monotonic() - self.started:.0f}s {text}")

    def script(self) -> None:
        """A broadcast at once, an outage a third of the way in, a worker kill at two thirds."""
        third = self.seconds / 3
        outage = max(5.0, min(30.0, third / 2))
        if self.broadcast.size > 0:
            self.start_broadcast()
        if self.stop_traffic.wait(max(0.0, third - (time.monotonic() - self.started))):
            return
        httpx.post(
            f"{self.fake_url}/_fake/faults", json={"kind": "outage", "endpoint": "messages"}, timeout=5
        )
        self.event(f"Graph API outage ({outage:.0f} s): breakers open, sends wait")
        if self.stop_traffic.wait(outage):
            return
        httpx.delete(f"{self.fake_url}/_fake/faults", timeout=5)
        self.event("Graph API back: sends resume")
        if self.stop_traffic.wait(max(0.0, third - outage)):
            return
        outbound = self.fleet["outbound"]
        outbound.kill()
        outbound.start()
        self.event("outbound workers killed with SIGKILL and restarted")

    def view(self) -> Table:
        with self.tally.lock:
            answers = dict(self.tally.answers)
        elapsed = time.monotonic() - self.started
        table = Table(title=f"adsapp demo · t+{elapsed:.0f}s of {self.seconds:.0f}s", caption=self.phase)
        table.add_column("what", min_width=22)
        table.add_column("now", min_width=30)

        def answered(prefix: str) -> str:
            return ", ".join(
                f"{k.split()[1]}×{v}" for k, v in sorted(answers.items()) if k.startswith(prefix)
            )

        table.add_row("webhooks answered", answered("webhook"))
        table.add_row("API sends answered", answered("send"))
        table.add_row("sent to Meta (fake)", str(self.fake_log().get("total", 0)))
        depths = queue_depths(self.settings.rabbitmq_url, QUEUES)
        table.add_row("queues (ready)", " ".join(f"{name}={depth}" for name, depth in depths.items()))
        table.add_row(
            "breakers", " ".join(f"{t.name}={self._breaker(t.phone_number_id)}" for t in self.tenants)
        )
        table.add_row(f"broadcast ({self.tenants[0].name})", self.broadcast_progress())
        table.add_row("dead letters", str(self._dead_letters()))
        return table

    def _breaker(self, phone_number_id: str) -> str:
        try:
            from redis import Redis

            from workers.outbound.options import OutboundOptions

            client = Redis.from_url(self.settings.redis_url, socket_timeout=1)
            try:
                return str(OutboundOptions().breakers(client).state(phone_number_id))
            finally:
                client.close()
        except Exception:
            return "?"

    def _dead_letters(self) -> int:
        engine = create_db_engine(self.settings, pool_size=1)
        try:
            with UnitOfWork(engine, system=True) as uow:
                return audit.dead_letter_count(uow.conn)
        finally:
            engine.dispose()

    def _stored(self, wamids: list[str]) -> Counter[str]:
        engine = create_db_engine(self.settings, pool_size=1)
        try:
            with UnitOfWork(engine, system=True) as uow:
                return audit.stored_wamids(uow.conn, wamids)
        finally:
            engine.dispose()

    def summary(self) -> tuple[Table, bool]:
        engine = create_db_engine(self.settings, pool_size=1)
        log = self.fake_log()
        at_meta = Counter({row["marker"]: int(row["count"]) for row in log.get("counts", [])})
        try:
            with UnitOfWork(engine, system=True) as uow:
                stored = audit.stored_wamids(uow.conn, self.tally.wamids)
                states = audit.send_states(uow.conn, self.tally.sends)
                job_status, items = (
                    audit.broadcast_items(uow.conn, self.broadcast.job_id)
                    if self.broadcast.job_id
                    else (None, [])
                )
        finally:
            engine.dispose()
        sent = sum(
            1 for s in self.tally.sends if states.get(s) in ("sent", "delivered", "read") and at_meta[s] == 1
        )
        settled = sum(1 for s in self.tally.sends if states.get(s) in ("failed", "ambiguous"))
        duplicates = sum(n - 1 for n in stored.values() if n > 1) + sum(
            at_meta[s] - 1 for s in self.tally.sends if at_meta[s] > 1
        )
        lost = (len(self.tally.wamids) - len(stored)) + (len(self.tally.sends) - sent - settled)
        table = Table(title="summary (from the database and the fake Graph API's log)")
        for column in ("accepted webhooks", "stored", "accepted sends", "sent", "failed/ambiguous",
                       "duplicates", "lost"):  # fmt: skip
            table.add_column(column, justify="right")
        table.add_row(str(len(self.tally.wamids)), str(len(stored)), str(len(self.tally.sends)), str(sent),
                      str(settled), str(duplicates), str(lost))  # fmt: skip
        self.broadcast_line, broadcast_clean = self._broadcast_line(job_status, items, at_meta)
        return table, duplicates == 0 and lost == 0 and broadcast_clean

    def _broadcast_line(
        self, job_status: str | None, items: list[tuple[str, str | None, str | None]], at_meta: Counter[str]
    ) -> tuple[str, bool]:
        """The broadcast's items against the fake's log (sent exactly once, or failed with a
        reason), and whether it is clean: its job ended with nothing lost or doubled."""
        b = self.broadcast
        if b.size == 0:
            return "broadcast: none asked for", True
        if not b.job_id:
            return f"broadcast: refused (HTTP {b.code})", False
        once = sum(1 for status, m, _ in items if status == "succeeded" and m and at_meta[m] == 1)
        failed = sum(1 for status, _, _ in items if status in ("failed", "skipped", "cancelled"))
        duplicates = sum(at_meta[m] - 1 for _, m, _ in items if m and at_meta[m] > 1)
        lost = b.total - once - failed
        line = (f"broadcast: {b.total} recipients, {once} sent once, {failed} failed, "
                f"{duplicates} duplicates, {lost} lost (job {job_status})")  # fmt: skip
        return line, job_status in JOB_FINAL and duplicates == 0 and lost == 0

    def settled(self) -> bool:
        return self.summary()[1]


def _demo(args: argparse.Namespace) -> int:
    console = Console()
    seconds = 24.0 if args.short else float(args.seconds)
    size = args.broadcast if args.broadcast is not None else (60 if args.short else 200)
    demo = Demo(get_settings(), seconds, max(0, size))

    def _terminate(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        demo.start(console)
        demo.started = time.monotonic()
        demo.event("traffic: signed webhooks and API sends for two tenants")
        threads = [
            threading.Thread(target=demo.run_traffic, daemon=True),
            threading.Thread(target=demo.script, daemon=True),
        ]
        for thread in threads:
            thread.start()
        shown = 0
        with Live(demo.view(), console=console, refresh_per_second=2, vertical_overflow="visible") as live:

            def tick() -> None:
                nonlocal shown
                time.sleep(1.0)
                for line in demo.tally.events[shown:]:
                    live.console.print(f"[bold yellow]{line}[/]")
                shown = len(demo.tally.events)
                live.update(demo.view())

            deadline = demo.started + seconds
            while time.monotonic() < deadline:
                tick()
            demo.stop_traffic.set()
            demo.event("traffic stopped: draining")
            drain_until = time.monotonic() + 90
            while time.monotonic() < drain_until and not demo.settled():
                tick()
            tick()
        table, clean = demo.summary()
        console.print(table)
        console.print(demo.broadcast_line, highlight=False, soft_wrap=True)
        console.print(
            "Where to look next: the ingress's /metrics, each worker group's metrics port, "
            "`adsapp dlq list` for dead letters, the fake's log at /_fake/log, and the console at /console."
        )
        if clean:
            console.print("[green]demo finished: nothing lost, nothing doubled[/]")
        else:
            console.print(f"[red]demo finished with losses or duplicates (logs in {demo.root})[/]")
        return 0 if clean else 1
    except KeyboardInterrupt:
        console.print("interrupted: stopping every process the demo started")
        return 130
    finally:
        demo.stop()
        sys.stdout.flush()
