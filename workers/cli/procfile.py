"""Run the lines of a Procfile as child processes, each in a session of its own.

What `adsapp demo`, the fault suite and the soak use to run the fleet exactly as `make run` does
(the same Procfile lines), while keeping the handles to kill one group with SIGKILL, restart it,
or stop everything on exit. A line is run by bash (`exec`), so `${PORT:-8000}` expands as in honcho.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ProcfileLine:
    name: str
    command: str


def read_procfile(path: Path) -> list[ProcfileLine]:
    lines: list[ProcfileLine] = []
    for raw in path.read_text().splitlines():
        text = raw.strip()
        if not text or text.startswith("#") or ":" not in text:
            continue
        name, _, command = text.partition(":")
        lines.append(ProcfileLine(name.strip(), command.strip()))
    return lines


@dataclass
class ChildProcess:
    """One Procfile line running; its log goes to a file of its own."""

    line: ProcfileLine
    cwd: Path
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = field(default=0)

    @property
    def name(self) -> str:
        return self.line.name

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(  # noqa: S603  (our own Procfile line, not user input)
                ["/bin/bash", "-c", "exec " + self.line.command],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    def _signal_group(self, sig: int) -> None:
        # The whole group, so Dramatiq's worker children never outlive their supervisor.
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL the line and all its children: a crash, nothing cleaned up."""
        self._signal_group(signal.SIGKILL)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(10)

    def suspend(self) -> None:
        """SIGSTOP the whole group: it holds what it took, and takes nothing more, until `resume`."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL past `timeout`; the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        # Children that ignored the supervisor's exit still go.
        self._signal_group(signal.SIGKILL)
        return self.popen.poll()

    def restart(self) -> None:
        self.stop()
        self.restarts += 1
        self.start()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Fleet:
    """Every chosen Procfile line, started together and stopped together (also on errors)."""

    def __init__(
        self,
        lines: Sequence[ProcfileLine],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_dir: Path,
        per_process_env: Callable[[str], Mapping[str, str]] | None = None,
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.children: dict[str, ChildProcess] = {}
        for line in lines:
            extra = per_process_env(line.name) if per_process_env is not None else {}
            self.children[line.name] = ChildProcess(line, cwd, {**env, **extra}, log_dir / f"{line.name}.log")

    def __iter__(self) -> Iterator[ChildProcess]:
        return iter(self.children.values())

    def __getitem__(self, name: str) -> ChildProcess:
        return self.children[name]

    def start(self) -> None:
        for child in self:
            child.start()

    def stop(self) -> None:
        for child in self:
            if child.running:
                child._signal_group(signal.SIGTERM)
        for child in self:
            child.stop()

    def dead(self) -> list[str]:
        return [child.name for child in self if not child.running]
