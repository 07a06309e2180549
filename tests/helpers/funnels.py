"""A brute-force funnel reference, written apart from the state machine it checks."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any


def best_attempt(
    events: Iterable[tuple[datetime, str, frozenset[int]]], n: int, window: timedelta
) -> list[datetime]:
    """From every step-1 event, take the earliest later event matching each next step within
    the window; keep the furthest attempt, the earliest started among equals."""
    ordered = sorted(events, key=lambda e: (e[0], e[1]))
    best: list[datetime] = []
    for i, (start, _, steps) in enumerate(ordered):
        if 0 not in steps:
            continue
        times = [start]
        for when, _, later in ordered[i + 1 :]:
            if len(times) == n or when - start > window:
                break
            if len(times) in later:
                times.append(when)
        if len(times) > len(best):
            best = times
    return best


def summary(attempts: list[list[datetime]], n: int) -> list[dict[str, Any]]:
    out = []
    for k in range(n):
        at_k = [a for a in attempts if len(a) > k]
        gaps = [(a[k] - a[k - 1]).total_seconds() for a in at_k] if k else []
        first = sum(1 for a in attempts if a)
        out.append(
            {
                "users": len(at_k),
                "conversion_rate": len(at_k) / first if first else 0.0,
                "median_seconds_from_previous": statistics.median(gaps) if gaps else None,
            }
        )
    return out
