"""`adsapp demo --short` end to end in a pseudo-terminal: it runs a broadcast, injects its faults,
prints its summary with nothing lost or doubled, and leaves no process of its own behind."""

from __future__ import annotations

import re
import sys

import pexpect
import pytest

from config import Settings
from devkit.processes import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(400)]


def _children_of(pid: int) -> list[int]:
    found: list[int] = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            found = [int(p) for p in f.read().split()]
    except OSError:
        return []
    return found + [g for c in found for g in _children_of(c)]


def test_the_short_demo_ends_with_a_clean_summary(settings: Settings) -> None:
    child = pexpect.spawn(
        str(ROOT / ".venv/bin/adsapp"), ["demo", "--short"], cwd=str(ROOT), encoding="utf-8",
        timeout=300, dimensions=(60, 160),
    )  # fmt: skip
    child.logfile_read = sys.stdout
    try:
        child.expect(r"broadcast to (\d+) recipients started", timeout=180)
        assert int(child.match.group(1)) == 60
        child.expect("Graph API outage", timeout=180)
        child.expect("outbound workers killed", timeout=120)
        child.expect("summary", timeout=200)
        child.expect(r"demo finished: nothing lost, nothing doubled", timeout=60)
        summary = child.before
        child.expect(pexpect.EOF, timeout=60)
    finally:
        spawned = _children_of(child.pid) if child.isalive() else []
        child.close(force=True)
    assert child.exitstatus == 0
    assert spawned == []
    numbers = [int(n) for n in re.findall(r"│\s*(\d+)\s*(?=│)", summary)]
    assert len(numbers) >= 7, summary
    accepted, stored, sends, sent, settled, duplicates, lost = numbers[-7:]
    assert accepted > 50 and stored == accepted
    assert sends > 20 and sent + settled == sends
    assert duplicates == 0 and lost == 0
    broadcast = re.search(
        r"broadcast: (\d+) recipients, (\d+) sent once, (\d+) failed, (\d+) duplicates, (\d+) lost \(job (\w+)\)",
        summary,
    )
    assert broadcast, summary
    total, once, failed, doubled, missing = (int(n) for n in broadcast.groups()[:5])
    assert total == 60 and once + failed == total and once > 0
    assert doubled == 0 and missing == 0
    assert broadcast.group(6) in ("completed", "completed_with_errors")
