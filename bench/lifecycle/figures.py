"""One measured figure beside its target, printed one per line like `make bench`'s ratios."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Figure:
    """`name`: `value` [target `target`: met | MISSED] (no target: reported only)."""

    name: str
    value: str
    target: str | None = None
    met: bool | None = None

    def __str__(self) -> str:
        verdict = ""
        if self.target is not None:
            verdict = f"  [target {self.target}: {'met' if self.met else 'MISSED'}]"
        return f"FIGURE {self.name}: {self.value}{verdict}"


# Every figure a run prints, by name (the suite checks that a tiny run prints them all).
NAMES = (
    "build",
    "export",
    "export rss",
    "export hashes",
    "export writes",
    "purge",
    "purge longest transaction",
    "purge lock transaction",
    "purge neighbours p95",
    "purge verification scan",
)
