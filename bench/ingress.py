"""Ingress benchmark: verified, durably queued WhatsApp webhooks per second on loopback.

Starts the ingress under uvicorn with the production flags against a fresh RabbitMQ vhost, then:
  1. max throughput: wrk, closed loop, signed ~2 KB deliveries; p50/p99 from wrk;
  2. fixed 1,000 req/s: an open-loop paced client, after one unmeasured second at that rate;
     p50/p99 from each request's scheduled time;
  3. checks that the queue holds exactly as many messages as there were 200s;
  4. the plain ceiling: the same app with publishing switched off, under the same wrk load;
  5. the 4,500/s target, raw and scaled by this run's plain ceiling against the reference
     machine's (see bench/reference.py).
Prints one JSON object. Needs wrk (Debian: `apt-get install wrk`) and rabbitmqctl.

    .venv/bin/python bench/ingress.py [--duration 10] [--connections 128] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.paced_load import percentile, run_paced  # noqa: E402
from bench.reference import PLAIN_WEBHOOK_PER_S, scaled_target  # noqa: E402
from config.settings import get_settings  # noqa: E402

os.environ.setdefault("APP_ENV", "development")
from devkit.processes import queue_depth  # noqa: E402
from devkit.services import rabbitmq_vhost  # noqa: E402
from domain import jobs  # noqa: E402

SECRET = "bench-app-secret"
BODY_COUNT = 256
PATH = "/webhooks/whatsapp"
UVICORN_FLAGS = [
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
    "--timeout-graceful-shutdown",
    "10",
    "--backlog",
    "2048",
]


def signed_bodies(count: int, size: int = 2048) -> list[tuple[bytes, str]]:
    bodies = []
    for index in range(count):
        message = {
            "from": "16505551234",
            "id": f"wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQz{index:012d}",
            "timestamp": "1749416383",
            "type": "text",
            "text": {"body": ""},
        }
        envelope = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550783881",
                                    "phone_number_id": "106540352242922",
                                },
                                "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
                                "messages": [message],
                            },
                        }
                    ],
                }
            ],
        }
        base = len(orjson.dumps(envelope))
        message["text"] = {"body": f"msg {index} " + "x" * max(0, size - base - len(f"msg {index} "))}
        body = orjson.dumps(envelope)
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        bodies.append((body, signature))
    return bodies


def http_request(host: str, port: int, body: bytes, signature: str) -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"X-Hub-Signature-256: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def wrk_script(bodies: list[tuple[bytes, str]], directory: Path) -> Path:
    lines = ["local requests = {}", "local n = 0", "init = function(args)"]
    for body, signature in bodies:
        text = body.decode()
        assert "]==]" not in text
        lines.append(
            f'  n = n + 1; requests[n] = wrk.format("POST", "{PATH}", '
            f'{{["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = "{signature}"}}, '
            f"[==[{text}]==])"
        )
    lines += [
        "end",
        "local i = 0",
        "request = function()",
        "  i = i + 1",
        "  return requests[(i % n) + 1]",
        "end",
    ]
    path = directory / "whatsapp.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def _latency_ms(text: str) -> float:
    value = float(re.sub(r"[a-z]+$", "", text))
    unit = re.sub(r"^[\d.]+", "", text)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, script: Path, duration: int, connections: int, threads: int) -> dict[str, Any]:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script)]
    command.append(url)
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", output, re.MULTILINE))
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)$", output, re.MULTILINE)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "requests": total,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1) if errors else None,
        "p50_ms": _latency_ms(percentiles["50"]),
        "p99_ms": _latency_ms(percentiles["99"]),
        "command": " ".join(command),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Ingress:
    """The ingress as a uvicorn subprocess with the production flags."""

    def __init__(self, env: dict[str, str], port: int, no_publish: bool, workers: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench.ingress_app:create",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            *UVICORN_FLAGS,
        ]
        self.env = {**env, "INGRESS_BENCH_NO_PUBLISH": "1" if no_publish else "0"}
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Ingress:
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError("ingress exited during start-up")
            time.sleep(0.1)
        raise RuntimeError("ingress not ready within 20 s")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run and for the paced run")
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced run, requests per second")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/ingress.py needs wrk on PATH: apt-get install -y wrk")

    settings = get_settings()
    bodies = signed_bodies(BODY_COUNT)
    database_url = urlsplit(settings.database_url)._replace(path="/postgres").geturl()
    result: dict[str, Any] = {
        "body_bytes": len(bodies[0][0]),
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "uvicorn": "uvicorn --factory bench.ingress_app:create " + " ".join(UVICORN_FLAGS),
    }
    with tempfile.TemporaryDirectory() as tmp, rabbitmq_vhost(settings.rabbitmq_url) as vhost_url:
        script = wrk_script(bodies, Path(tmp))
        env = {
            **os.environ,
            "RABBITMQ_URL": vhost_url,
            "DATABASE_URL": database_url,
            "WHATSAPP_APP_SECRET": SECRET,
            "LOG_LEVEL": "WARNING",
        }
        port = free_port()
        with Ingress(env, port, no_publish=False, workers=args.workers) as ingress:
            url = f"{ingress.base}{PATH}"
            # Paced first, on an empty queue; every request completes, so the check is exact.
            requests = [http_request("127.0.0.1", port, body, sig) for body, sig in bodies]
            # One second at the same rate first, unmeasured: connections, pools and first-call
            # caches warm up, so the percentiles describe the running service, not its start.
            warm_paced = asyncio.run(run_paced("127.0.0.1", port, requests, args.rate, 1.0))
            paced = asyncio.run(run_paced("127.0.0.1", port, requests, args.rate, args.duration))
            paced_ok = paced.statuses.get(200, 0) + warm_paced.statuses.get(200, 0)
            paced_depth = queue_depth(vhost_url, jobs.INBOUND_QUEUE)
            warm = run_wrk(url, script, 2, args.connections, args.threads)
            queued = run_wrk(url, script, args.duration, args.connections, args.threads)
        depth = queue_depth(vhost_url, jobs.INBOUND_QUEUE)
        wrk_ok = sum(run["requests"] - run["non_2xx"] for run in (warm, queued))
        result["queued"] = {
            **queued,
            "verified_rps": round(queued["rps"] * (1 - queued["non_2xx"] / max(1, queued["requests"])), 1),
        }
        result["paced"] = {
            "target_rps": args.rate,
            "sent": paced.sent,
            "statuses": {str(k): v for k, v in sorted(paced.statuses.items())},
            "errors": paced.errors,
            "late_starts": paced.late_starts,
            "p50_ms": round(percentile(paced.latencies, 0.50) * 1000, 3),
            "p99_ms": round(percentile(paced.latencies, 0.99) * 1000, 3),
            "max_ms": round(max(paced.latencies, default=float("nan")) * 1000, 3),
        }
        # wrk stops with requests in flight: the server may still queue them after wrk stopped
        # reading, so the queue can hold up to one extra message per connection, never fewer.
        result["durability"] = {
            "paced_200s": paced_ok,
            "queue_depth_after_paced": paced_depth,
            "wrk_200s": wrk_ok,
            "queue_depth_after_wrk": depth - paced_depth,
            "every_200_queued": paced_depth == paced_ok and depth - paced_depth >= wrk_ok,
        }
        ok = result["durability"]["every_200_queued"]

        with Ingress(env, free_port(), no_publish=True, workers=args.workers) as plain:
            run_wrk(f"{plain.base}{PATH}", script, 2, args.connections, args.threads)
            ceiling = run_wrk(f"{plain.base}{PATH}", script, args.duration, args.connections, args.threads)
        result["plain_ceiling"] = ceiling
        result["queued_to_plain_ratio"] = round(queued["rps"] / ceiling["rps"], 3)
        result["throughput_target"] = scaled_target(
            4500, result["queued"]["verified_rps"], ceiling["rps"], PLAIN_WEBHOOK_PER_S
        )
        result["targets"] = {
            "verified_rps>=4500": result["queued"]["verified_rps"] >= 4500,
            "verified_rps>=scaled_target": result["throughput_target"]["met_scaled"],
            "paced_p99_ms<=10": result["paced"]["p99_ms"] <= 10,
            "every_200_queued": ok,
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
