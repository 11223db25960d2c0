"""The Procfile runner behind `adsapp demo`, the fault suite and the soak, on real child processes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from devkit.processes import ROOT, wait_for
from workers.cli.procfile import Fleet, ProcfileLine, read_procfile


def test_procfile_dev_runs_every_procfile_line_plus_the_fake_graph_api() -> None:
    production = read_procfile(ROOT / "Procfile")
    development = read_procfile(ROOT / "Procfile.dev")
    assert {line.name for line in production} >= {"web", "inbound", "outbound", "billing", "scheduler"}
    assert set(production) < set(development)
    assert [line.name for line in development if line not in production] == ["fake-graph"]


def test_comments_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text("# a comment\n\nweb: run --port ${PORT:-8000}\nworker:  python -m x  \n")
    assert read_procfile(procfile) == [
        ProcfileLine("web", "run --port ${PORT:-8000}"),
        ProcfileLine("worker", "python -m x"),
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_kill_takes_the_children_too_and_stop_ends_everything(tmp_path: Path) -> None:
    # Each line starts a child of its own that would outlive a plain kill of the parent.
    line = "sleep 60 & echo $! > {pidfile}; wait"
    lines = [ProcfileLine(n, line.format(pidfile=tmp_path / f"{n}.pid")) for n in ("a", "b")]
    fleet = Fleet(lines, cwd=tmp_path, env=dict(os.environ), log_dir=tmp_path / "logs",
                  per_process_env=lambda name: {"WHO": name})  # fmt: skip
    fleet.start()
    try:
        assert wait_for(lambda: all((tmp_path / f"{n}.pid").exists() for n in ("a", "b")), 10)
        time.sleep(0.1)
        children = {n: int((tmp_path / f"{n}.pid").read_text()) for n in ("a", "b")}
        assert fleet["a"].env["WHO"] == "a"
        fleet["a"].kill()
        # The orphaned child goes too (the signal is delivered to the group; its exit takes a moment).
        assert not fleet["a"].running and wait_for(lambda: not _alive(children["a"]), 5)
        assert fleet["b"].running and _alive(children["b"])
        assert fleet.dead() == ["a"]
    finally:
        fleet.stop()
    assert not fleet["b"].running and wait_for(lambda: not _alive(children["b"]), 5)


def test_compose_runs_every_procfile_line_and_reaches_the_fake() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for line in read_procfile(ROOT / "Procfile"):
        command = " ".join(services[line.name]["command"])
        # The same program and arguments; compose spells out the port the Procfile takes from $PORT.
        words = [w for w in line.command.replace(".venv/bin/", "").split() if "PORT" not in w]
        assert all(w in command for w in words), (line.name, command)
    assert "readyz" in " ".join(services["web"]["healthcheck"]["test"])
    fake = " ".join(services["fake-graph"]["command"])
    assert "--host 0.0.0.0" in fake and "http://web:8000/webhooks/whatsapp" in fake
    assert services["web"]["environment"]["GRAPH_API_URL"] == "http://fake-graph:8900"
    media = services["inbound"]["environment"]["MEDIA_DIR"]
    assert f"media:{media}" in services["inbound"]["volumes"] and "media" in compose["volumes"]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv/", "var/", ".mypy_cache/", ".pytest_cache/"} <= set(ignored)
