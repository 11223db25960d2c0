"""The whole fleet of the Procfile, the fake Graph API and private services, ready for faults."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from sqlalchemy.engine import Engine

from config import Settings
from db.engine import create_db_engine
from devkit.load import Target
from devkit.processes import ROOT, consumers, free_port, wait_for
from devkit.tenants import Tenant, make_tenant
from tests.faults.services import PrivatePostgres, PrivateRabbitMQ, PrivateRedis
from tests.support.bulk import BULK_SCOPES, bulk_tenant
from workers.cli import traffic
from workers.cli.procfile import ChildProcess, Fleet, ProcfileLine, read_procfile
from workers.run import GROUPS

APP_SECRET = "faults-app-secret"
STRIPE_SECRET = "whsec_faults"
DATABASE = "adsapp_faults"
CUSTOMERS = 40
# The broadcasting number's rate: a broadcast of a few hundred takes several chunks and seconds,
# so a kill of the bulk group lands with chunks in flight.
BULK_MPS = 60
# Numbers of their own for the Redis restart's checks: one whose sends are made to fail at will
# (its breaker), one sent to faster than its rate (its pacing), each with recipients enough that
# no recipient's pair limit is what holds it back.
GUARDED_MPS = 80
PACED_MPS = 5
SIDE_CUSTOMERS = 200


@dataclass(frozen=True)
class SideNumber:
    organization_id: str
    number: str
    waba_id: str
    api_key: str
    customers: tuple[str, ...]


def worker_group(line: ProcfileLine) -> str | None:
    match = re.search(r"workers\.run\s+(\w+)", line.command)
    return match.group(1) if match else None


def try_tmpfs(path: Path, size: str) -> bool:
    """A small filesystem for the media directory, so "disk full" is real; False where not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, check=False
    )
    return done.returncode == 0


@dataclass
class Stack:
    root: Path
    postgres: PrivatePostgres
    redis: PrivateRedis
    rabbitmq: PrivateRabbitMQ
    fleet: Fleet
    fake: ChildProcess
    ingress_url: str
    fake_url: str
    env: dict[str, str]
    target: Target
    guarded: SideNumber
    paced: SideNumber
    media_dir: Path
    media_is_tmpfs: bool
    declared: dict[str, bool] = field(default_factory=dict)

    @property
    def dsn(self) -> str:
        return self.postgres.dsn(DATABASE)

    def groups(self) -> list[str]:
        return [c.name for c in self.fleet if worker_group(c.line) is not None]

    def wait_ready(self, name: str, timeout: float = 90.0) -> None:
        child = self.fleet[name]
        group = worker_group(child.line)
        if name == "web":
            ok = wait_for(lambda: _ready(self.ingress_url), timeout, interval=0.2)
        elif group is not None and self.consumes(group):
            queue = GROUPS[group].queues[0]
            ok = wait_for(lambda: consumers(queue, self.rabbitmq.url) >= 1, timeout, interval=0.3)
        else:
            ok = wait_for(lambda: child.running and time.monotonic() - child.started_at > 1.0, timeout)
        if not ok or not child.running:
            raise RuntimeError(f"{name} not ready:\n{child.log_tail()}")

    def consumes(self, group: str) -> bool:
        """Whether any actor serves this group yet (a group without actors declares no queue)."""
        return self.declared.get(group, False)

    def close(self) -> None:
        self.fleet.stop()
        self.fake.stop()
        self.rabbitmq.stop()
        self.redis.stop()
        self.postgres.stop("immediate")
        if self.media_is_tmpfs:
            subprocess.run(["umount", "-l", str(self.media_dir)], capture_output=True, check=False)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def build_stack() -> Stack:
    root = Path(tempfile.mkdtemp(prefix="adsapp-faults-"))
    root.chmod(0o755)
    rabbitmq = PrivateRabbitMQ(root)
    rabbit_up = threading.Thread(target=rabbitmq.start, daemon=True)
    rabbit_up.start()  # its boot is the slowest; the rest is set up meanwhile
    postgres = PrivatePostgres(root)
    postgres.start()
    redis = PrivateRedis(root)
    redis.start()
    media_dir = root / "media"
    # Room for every file the media phase stores (a few thousand of 1-5 KB, a page or two each):
    # at 4 MB the phase's own downloads could fill it before the fault did, and nothing would
    # free it afterwards. The fault's filler takes whatever is left.
    media_is_tmpfs = try_tmpfs(media_dir, "64m")
    port, fake_port = free_port(), free_port()
    ingress_url, fake_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{fake_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "RABBITMQ_", "REDIS_"))}
    env.update(
        APP_ENV="development",
        # The roles `db upgrade` makes; the private cluster trusts local logins, so no passwords.
        DATABASE_URL=postgres.url(DATABASE, "adsapp_app"),
        DATABASE_SYSTEM_URL=postgres.url(DATABASE, "adsapp_system"),
        DATABASE_ADMIN_URL=postgres.url(DATABASE),
        RABBITMQ_URL=rabbitmq.url,
        REDIS_URL=redis.url,
        GRAPH_API_URL=fake_url,
        WHATSAPP_APP_SECRET=APP_SECRET,
        STRIPE_WEBHOOK_SECRET=STRIPE_SECRET,
        PORT=str(port),
        FAKE_GRAPH_PORT=str(fake_port),
        MEDIA_DIR=str(media_dir),
        METRICS_DIR=str(root / "prometheus"),
        LOG_LEVEL="WARNING",
        WEB_CONCURRENCY="1",
        # Short enough to observe within the suite: a send lost mid-call, breakers reopening.
        OUTBOUND_SEND_LEASE_SECONDS="15",
        OUTBOUND_BREAKER_RESET_SECONDS="5",
        OUTBOUND_API_BREAKER_RESET_SECONDS="5",
    )
    subprocess.run(
        [str(ROOT / ".venv/bin/adsapp"), "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    fake = ChildProcess(
        ProcfileLine("fake-graph", f".venv/bin/adsapp fake-graph --port {fake_port}"),
        ROOT, env, root / "fake-graph.log",
    )  # fmt: skip
    fake.start()
    if not wait_for(lambda: _answers(f"{fake_url}/_fake/log"), 30):
        raise RuntimeError(f"fake Graph API did not start:\n{fake.log_tail()}")
    httpx.post(
        f"{fake_url}/_fake/config",
        json={"webhook_url": f"{ingress_url}/webhooks/whatsapp", "app_secret": APP_SECRET},
    ).raise_for_status()
    target, guarded, paced = _seed(postgres, env, ingress_url)
    # At the fake too: the scheduler's template sync follows its listing.
    templates = {"waba_id": target.bulk_waba, "templates": [traffic.BROADCAST_TEMPLATE]}
    httpx.post(f"{fake_url}/_fake/templates", json=templates).raise_for_status()
    rabbit_up.join(180)
    if not rabbitmq.ready():
        raise RuntimeError("private RabbitMQ did not start")

    def per_process(_name: str) -> dict[str, str]:
        # Metrics ports of their own: other fleets on this machine hold the default ones.
        port = str(free_port())
        return {"dramatiq_prom_port": port, "INGRESS_METRICS_PORT": port, "SCHEDULER_METRICS_PORT": port}

    fleet = Fleet(read_procfile(ROOT / "Procfile"), cwd=ROOT, env=env, log_dir=root / "logs",
                  per_process_env=per_process)  # fmt: skip
    stack = Stack(root, postgres, redis, rabbitmq, fleet, fake, ingress_url, fake_url, env, target, guarded,
                  paced, media_dir, media_is_tmpfs)  # fmt: skip
    queues = _actor_queues(env)
    stack.declared = {name: any(q in queues for q in group.queues) for name, group in GROUPS.items()}
    fleet.start()
    try:
        for child in fleet:
            stack.wait_ready(child.name, timeout=120)
    except BaseException:
        stack.close()
        raise
    return stack


def _actor_queues(env: dict[str, str]) -> set[str]:
    """The queues some actor serves (a group without actors yet, like maintenance, declares none)."""
    code = "import dramatiq, workers.app; print(' '.join(dramatiq.get_broker().get_declared_queues()))"
    done = subprocess.run([str(ROOT / ".venv/bin/python"), "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    return set(done.stdout.split())


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _seed(
    postgres: PrivatePostgres, env: dict[str, str], ingress_url: str
) -> tuple[Target, SideNumber, SideNumber]:
    settings = Settings(
        app_env="development",
        database_url=env["DATABASE_URL"],
        database_admin_url=env["DATABASE_ADMIN_URL"],
        database_system_url=env["DATABASE_SYSTEM_URL"],
        redis_url=env["REDIS_URL"],
    )
    engine = create_db_engine(settings, pool_size=1)
    try:
        sender = make_tenant(engine, mps=1000)
        key = sender.api_key()
        customers = tuple(sender.contact(f"1650777{n:04d}") for n in range(CUSTOMERS))
        billing = make_tenant(engine)
        broadcaster = bulk_tenant(engine, mps=BULK_MPS)
        broadcaster.templates([traffic.BROADCAST_TEMPLATE])
        bulk_key = broadcaster.api_key(BULK_SCOPES)
        guarded_tenant, guarded = _side_number(engine, GUARDED_MPS, "1650666")
        paced_tenant, paced = _side_number(engine, PACED_MPS, "1650555")
    finally:
        engine.dispose()
    with psycopg.connect(postgres.dsn(DATABASE), autocommit=True) as conn:
        # The senders must never run into a plan's monthly quota during the suite.
        with contextlib.suppress(psycopg.Error):
            conn.execute(
                "UPDATE organizations SET plan = 'enterprise', subscription_status = 'active' WHERE id = ANY(%s)",
                ([sender.organization_id, broadcaster.organization_id, guarded_tenant.organization_id,
                  paced_tenant.organization_id],),
            )  # fmt: skip
    target = Target(
        ingress_url=ingress_url,
        app_secret=APP_SECRET,
        stripe_secret=STRIPE_SECRET,
        phone_number_id=sender.number,
        waba_id=sender.waba_id,
        api_key=key,
        customers=customers,
        billing_org=str(billing.organization_id),
        bulk_api_key=bulk_key,
        bulk_number=broadcaster.number,
        bulk_waba=broadcaster.waba_id,
    )
    return target, guarded, paced


def _side_number(engine: Engine, mps: int, prefix: str) -> tuple[Tenant, SideNumber]:
    tenant = make_tenant(engine, mps=mps)
    return tenant, SideNumber(
        organization_id=str(tenant.organization_id),
        number=tenant.number,
        waba_id=tenant.waba_id,
        api_key=tenant.api_key(),
        customers=tuple(tenant.contact(f"{prefix}{n:04d}") for n in range(SIDE_CUSTOMERS)),
    )


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
