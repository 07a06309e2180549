"""Per-project token buckets (seed 000: 1,000 requests per minute by default)."""

from __future__ import annotations

import time
from collections.abc import Callable

from processor.errors import RateLimited


class TokenBucket:
    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now

    def take(self, now: float) -> float:
        """Take one token; returns 0, or the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    def __init__(
        self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(burst, 1))
        self.clock = clock
        self.buckets: dict[int, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def check(self, project_id: int) -> None:
        if not self.enabled:
            return
        now = self.clock()
        bucket = self.buckets.get(project_id)
        if bucket is None:
            bucket = self.buckets[project_id] = TokenBucket(self.rate, self.capacity, now)
        wait = bucket.take(now)
        if wait:
            raise RateLimited(
                f"project {project_id} is over its request rate limit", retry_after=wait
            )
