"""Soak: the whole Procfile fleet under steady mixed traffic for `--minutes` (default 10).

Every 10 s (`--sample-seconds`) it records, per process of the fleet (each Dramatiq worker child
too): RSS, open file descriptors and TCP connections to Postgres (counted from /proc, not asked of
the process), plus what each traffic stream got accepted and the errors it saw. The report says
whether memory, descriptors and connections stayed flat after the warm-up (RSS within 5 %).

Runs in a database and RabbitMQ vhost of its own on the configured services, dropped afterwards;
traffic: signed WhatsApp deliveries (text and statuses), signed Stripe events, API sends, with the
fake Graph API posting sent/delivered/read webhooks for every send.

    .venv/bin/python -m bench.soak --minutes 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.history import bench_database_url

ROOT = Path(__file__).resolve().parents[1]
FLAT_RSS_PCT = 5.0


def _tree(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(p) for p in f.read().split()]
    except OSError:
        return []
    return [pid] + [g for k in kids for g in _tree(k)]


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _inodes_to(port: int) -> set[str]:
    """Socket inodes of established TCP connections whose remote port is `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if int(cols[2].rsplit(":", 1)[1], 16) == port and cols[3] == "01":
                        found.add(cols[9])
        except OSError:
            continue
    return found


def sample(fleet: Any, pg_port: int) -> dict[str, Any]:
    to_pg = _inodes_to(pg_port)
    processes: dict[str, Any] = {}
    for child in fleet:
        if child.pid is None:
            continue
        for i, pid in enumerate(_tree(child.pid)):
            processes[f"{child.name}[{i}]"] = {
                "pid": pid,
                "rss_mb": round(_rss_kb(pid) / 1024, 1),
                "fds": _fds(pid),
                "db_connections": len(_socket_inodes(pid) & to_pg),
            }
    return processes


def flatness(samples: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    after = samples[warmup:] or samples[-1:]
    result: dict[str, Any] = {}
    for name in after[0]["processes"]:
        series = [s["processes"][name] for s in after if name in s["processes"]]
        rss = [p["rss_mb"] for p in series]
        base = rss[0] or 1.0
        result[name] = {
            "rss_mb_first": rss[0],
            "rss_mb_last": rss[-1],
            "rss_growth_pct": round((rss[-1] - base) / base * 100, 1),
            "rss_max_over_first_pct": round((max(rss) - base) / base * 100, 1),
            "fds": [min(p["fds"] for p in series), max(p["fds"] for p in series)],
            "db_connections": [
                min(p["db_connections"] for p in series),
                max(p["db_connections"] for p in series),
            ],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--warmup-seconds", type=float, default=60.0)
    args = parser.parse_args()

    from config import Settings, get_settings
    from db import admin
    from db.engine import create_db_engine
    from devkit.load import Load, Target
    from devkit.processes import free_port, wait_for
    from devkit.services import rabbitmq_vhost
    from devkit.tenants import make_tenant
    from workers.cli.procfile import ChildProcess, Fleet, ProcfileLine, read_procfile

    db_url = bench_database_url()
    root = Path(tempfile.mkdtemp(prefix="adsapp-soak-"))
    with rabbitmq_vhost(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")) as amqp:
        port, fake_port = free_port(), free_port()
        ingress, fake_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{fake_port}"
        env = {**os.environ, "DATABASE_URL": db_url, "RABBITMQ_URL": amqp, "GRAPH_API_URL": fake_url,
               "PORT": str(port), "FAKE_GRAPH_PORT": str(fake_port), "WHATSAPP_APP_SECRET": "soak-secret",
               "STRIPE_WEBHOOK_SECRET": "whsec_soak", "MEDIA_DIR": str(root / "media"),
               "METRICS_DIR": str(root / "prometheus"), "LOG_LEVEL": "WARNING",
               "OUTBOUND_REDIS_NAMESPACE": f"adsapp-soak:{uuid.uuid4().hex[:8]}"}  # fmt: skip
        os.environ.update({"DATABASE_URL": db_url, "RABBITMQ_URL": amqp})
        get_settings.cache_clear()
        settings = Settings()
        admin.ensure_database(settings)
        admin.upgrade(settings)
        engine = create_db_engine(settings, pool_size=1)
        sender, billing = make_tenant(engine, mps=1000), make_tenant(engine)
        key = sender.api_key()
        customers = tuple(sender.contact(f"1650888{n:04d}") for n in range(40))
        engine.dispose()
        owner = create_db_engine(settings, pool_size=1, as_app_role=False)
        with owner.begin() as conn:  # the sender must never run into a plan's monthly quota
            conn.exec_driver_sql(
                "UPDATE organizations SET plan = 'enterprise', subscription_status = 'active' "
                "WHERE id = %(o)s",
                {"o": str(sender.organization_id)},
            )
        owner.dispose()
        fake = ChildProcess(
            ProcfileLine("fake-graph", f".venv/bin/adsapp fake-graph --port {fake_port} "
                         f"--webhook-url {ingress}/webhooks/whatsapp"),
            ROOT, {**env, "WHATSAPP_APP_SECRET": "soak-secret"}, root / "fake-graph.log",
        )  # fmt: skip
        fleet = Fleet(read_procfile(ROOT / "Procfile"), cwd=ROOT, env=env, log_dir=root / "logs",
                      per_process_env=lambda _n: {"dramatiq_prom_port": str(free_port())})  # fmt: skip
        load: Load | None = None
        try:
            fake.start()
            fleet.start()

            def ready() -> bool:
                try:
                    return httpx.get(f"{ingress}/readyz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            if not wait_for(ready, 120, interval=0.5):
                raise RuntimeError("the fleet did not become ready:\n" + fleet["web"].log_tail())
            time.sleep(5)  # the workers' consumers
            target = Target(ingress, "soak-secret", "whsec_soak", sender.number, sender.waba_id, key,
                            customers, str(billing.organization_id))  # fmt: skip
            load = Load(target)
            ledger = load.begin()
            samples: list[dict[str, Any]] = []
            started = time.monotonic()
            end = started + args.minutes * 60
            previous: Counter[str] = Counter()
            while time.monotonic() < end:
                time.sleep(args.sample_seconds)
                answers = Counter(ledger.answers)
                interval = {k: v - previous[k] for k, v in answers.items()}
                previous = answers
                samples.append({
                    "t_s": round(time.monotonic() - started, 1),
                    "answers": interval,
                    "processes": sample(fleet, urlsplit(db_url).port or 5432),
                })  # fmt: skip
                dead = fleet.dead()
                if dead:
                    raise RuntimeError(f"processes died: {dead}")
            load.close()
            load = None
            elapsed = time.monotonic() - started
            totals = Counter(ledger.answers)
            streams = {
                s: sum(v for k, v in totals.items() if k.startswith(s + ":"))
                for s in ("webhook", "stripe", "send")
            }
            accepted = {
                "webhook": totals["webhook:200"],
                "stripe": totals["stripe:200"],
                "send": totals["send:202"],
            }
            warmup = int(args.warmup_seconds // args.sample_seconds)
            flat = flatness(samples, warmup)
            log = httpx.get(f"{fake_url}/_fake/log", params={"summary": "1"}, timeout=30).json()
            report = {
                "command": " ".join([os.path.basename(sys.executable), "-m", "bench.soak", *sys.argv[1:]]),
                "cores": os.cpu_count(),
                "minutes": args.minutes,
                "offered_per_s": {s: round(1 / i, 1) for s, i in load_intervals().items()},
                "accepted_per_s": {s: round(n / elapsed, 1) for s, n in accepted.items()},
                "errors": {s: streams[s] - accepted[s] for s in streams},
                "answers": dict(totals),
                "fake_sends": log["total"],
                "fake_duplicates": len(log["duplicates"]),
                "status_webhooks": log.get("webhooks"),
                "rss_flat_within_pct": FLAT_RSS_PCT,
                "rss_flat": all(abs(p["rss_growth_pct"]) <= FLAT_RSS_PCT for p in flat.values()),
                "after_warmup": flat,
                "samples": samples,
            }
            print(json.dumps(report, indent=2))
        finally:
            if load is not None:
                load.close()
            fleet.stop()
            fake.stop()
            get_settings.cache_clear()
            admin.drop_database(get_settings())


def load_intervals() -> dict[str, float]:
    from devkit.load import Load

    defaults = Load.__init__.__kwdefaults__ or {}
    return {"webhook": defaults["webhook_interval"], "send": defaults["send_interval"],
            "stripe": defaults["stripe_interval"]}  # fmt: skip


if __name__ == "__main__":
    main()
