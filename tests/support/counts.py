"""Fleet counts recorded in memory, for tests of what a part of the fleet counts."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RecordedCounts:
    added: list[tuple[str, str, int]] = field(default_factory=list)

    def add(self, family: str, field: str, n: int = 1) -> None:
        self.added.append((family, field, n))
