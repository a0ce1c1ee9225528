"""How many jobs ran at once, from the jobs' own timestamps rather than from
samples of their statuses (a sample can fall between two overlapping runs)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path


def peak_concurrency(spans: Iterable[tuple[float, float]]) -> int:
    """The most [start, end) intervals of `spans` that overlap at any instant.
    One that ends when another starts does not overlap it."""
    edges = []
    for start, end in spans:
        edges += [(start, 1), (end, -1)]
    running = peak = 0
    for _, step in sorted(edges):  # at a tie, an end (-1) sorts before a start (+1)
        running += step
        peak = max(peak, running)
    return peak


def recorded_spans(path: Path) -> list[tuple[float, float]]:
    """The (start, end) of each job that wrote a complete line to `path`
    (testjobs' `record_span`); [] if none has yet."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]
    return [(span["start"], span["end"]) for span in map(json.loads, lines)]
