"""Running the fleet's processes for end-to-end tests and benchmarks: the uvicorn ingress and
Dramatiq workers as real subprocesses, with the test session's environment (database, vhost).

Each process runs in a session of its own, so `stop()` (SIGTERM, then SIGKILL past the timeout) and
`kill()` (SIGKILL, a crash) reach Dramatiq's worker children too. Readiness is polled, never slept.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stable_port() -> int:
    """A free port below the kernel's ephemeral range, for a server that is stopped and started
    again on the same port: a port the kernel hands out (`free_port`) may meanwhile become the
    local end of some outgoing connection, and the restart then fails with EADDRINUSE."""
    for _ in range(200):
        port = random.randrange(20_000, 32_000)
        try:
            for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::")):
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port between 20000 and 32000")


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class Process:
    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(tempfile.mkstemp(prefix=f"adsapp-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, ready: Callable[[], bool], timeout: float = 30.0) -> None:
        def check() -> bool:
            if not self.running:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()[-4000:]}")
            return ready()

        if not wait_for(check, timeout):
            raise TimeoutError(f"{self.name} not ready within {timeout}s:\n{self.log()[-4000:]}")

    def _signal(self, sig: int) -> None:
        # The whole process group, even once the leader is gone: worker children must not outlive it.
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it has not exited within `timeout`."""
        if self.proc is None:
            return None
        self._signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL the process and every child of it: a crash, nothing cleaned up."""
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)


def start_ingress(
    env: Mapping[str, str] | None = None, port: int | None = None, timeout: float = 30.0
) -> tuple[Process, str]:
    port = port or free_port()
    process = Process(
        "ingress",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "ingress.app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "10",
        ],
        env,
    ).start()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    process.wait_ready(ready, timeout)
    return process, url


def start_worker(
    queues: Sequence[str],
    *,
    processes: int = 1,
    threads: int = 8,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    module: str = "workers.app",
) -> Process:
    prom_dir = tempfile.mkdtemp(prefix="adsapp-prom-")
    process = Process(
        "worker-" + "-".join(queues),
        [
            sys.executable,
            "-m",
            "dramatiq",
            module,
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--queues",
            *queues,
        ],
        # A metrics port and directory of its own, so several workers never clash.
        {
            "dramatiq_prom_port": str(free_port()),
            "dramatiq_prom_db": prom_dir,
            "PROMETHEUS_MULTIPROC_DIR": prom_dir,
            **(env or {}),
        },
    ).start()
    # Ready when every process consumes: a broker fact, whatever the log level.
    process.wait_ready(lambda: consumers(queues[0], process.env["RABBITMQ_URL"]) >= processes, timeout)
    return process


def start_scheduler(env: Mapping[str, str] | None = None, timeout: float = 60.0) -> Process:
    """`workers.scheduler` on a metrics port of its own (the default one may be any other fleet's on
    this machine: a second scheduler would exit at once on EADDRINUSE), ready once that answers."""
    port = free_port()
    process = Process(
        "scheduler",
        [sys.executable, "-m", "workers.scheduler"],
        {"METRICS_HOST": "127.0.0.1", "SCHEDULER_METRICS_PORT": str(port), **(env or {})},
    ).start()

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    process.wait_ready(ready, timeout)
    return process


def queue_depth(amqp_url: str, queue: str) -> int:
    """Messages ready in a declared queue."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def consumers(queue: str, amqp_url: str) -> int:
    import pika
    import pika.exceptions

    try:
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    except pika.exceptions.AMQPError:
        return 0
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.consumer_count)
    except pika.exceptions.ChannelClosedByBroker:
        return 0  # not declared yet
    finally:
        if connection.is_open:
            connection.close()
