"""Private Postgres, RabbitMQ and Redis instances for the fault suite, on free ports in a temp dir.

The machine's shared services are used by everyone else's tests; the faults here stop and restart
services, so they get instances of their own that nobody else knows about. Postgres refuses to run
as root, so its cluster belongs to the `postgres` OS user (`runuser`); RabbitMQ's scripts drop to
the `rabbitmq` user by themselves.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pika
import pika.exceptions
import psycopg
import redis

from devkit.processes import stable_port, wait_for


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"no {name} under /usr/lib/postgresql/*/bin")
    return found[-1]


def _open_to_everyone(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)


class PrivatePostgres:
    def __init__(self, root: Path) -> None:
        self.port = stable_port()
        self.data = root / "pgdata"
        self.sockets = root / "pgsock"
        self.logfile = root / "postgres.log"
        _open_to_everyone(self.sockets)
        shutil.chown(root, "postgres")
        self._as_postgres(
            _pg_bin("initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def _as_postgres(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv], check=check, capture_output=True, timeout=120
        )

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200"
        )
        self._as_postgres(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-o", options, "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def ready(self) -> bool:
        try:
            with psycopg.connect(self.dsn("postgres"), connect_timeout=1):
                return True
        except psycopg.Error:
            return False


class PrivateRedis:
    def __init__(self, root: Path) -> None:
        self.port = stable_port()
        self.dir = root / "redis"
        self.dir.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        if not wait_for(self.ready, 20):
            raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def ready(self) -> bool:
        try:
            client = redis.Redis.from_url(self.url, socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False


class PrivateRabbitMQ:
    def __init__(self, root: Path) -> None:
        self.port = stable_port()
        self.dist_port = stable_port()
        self.node = f"faults-{uuid.uuid4().hex[:8]}@localhost"
        self.root = root / "rabbitmq"
        _open_to_everyone(self.root)
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq.conf").write_text("log.console = false\n")
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.root / "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def start(self, timeout: float = 180.0) -> None:
        log = (self.root / "server.out").open("ab")
        self.proc = subprocess.Popen(
            ["rabbitmq-server"], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        if not wait_for(self.ready, timeout, interval=0.5):
            out = (self.root / "server.out").read_text(errors="replace")[-3000:]
            logs = "".join(p.read_text(errors="replace")[-3000:] for p in (self.root / "log").glob("*.log"))
            exited = self.proc.poll()
            raise RuntimeError(
                f"private RabbitMQ node {self.node} did not start (exit {exited}):\n{out}\n{logs}"
            )

    def stop(self) -> None:
        subprocess.run(
            ["rabbitmqctl", "-n", self.node, "stop"], capture_output=True, timeout=120, check=False
        )
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(60)

    def ready(self) -> bool:
        try:
            connection = pika.BlockingConnection(
                pika.URLParameters(self.url + "?connection_attempts=1&socket_timeout=2")
            )
        except pika.exceptions.AMQPError:
            return False
        connection.close()
        return True
