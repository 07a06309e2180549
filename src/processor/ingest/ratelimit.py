"""Per-project token buckets (the Telling Logger API: 1,000 requests per minute by default),
shared by every worker process.

``serve --workers N`` runs N processes; the kernel spreads connections (not requests) among
them, and one gRPC client keeps one connection, so neither a bucket per process nor a 1/N
share per process would hold the limit. The buckets live in one shared memory file instead:
worker 0 creates it and hands its descriptor to the others, and each take is one read and
one write of a 24-byte slot under an ``fcntl`` lock.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable

from processor.errors import RateLimited

# One slot: project id + 1 (0 = free), tokens, when the tokens were counted (monotonic
# seconds, the same clock in every process).
_SLOT = struct.Struct("<qdd")
SLOTS = 4096
# Slots searched for a project, from the one its id hashes to.
_PROBE = 16


class SharedBuckets:
    """Token buckets in shared memory, one per project, for all processes holding ``fd``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._map = mmap.mmap(fd, SLOTS * _SLOT.size)
        # fcntl locks exclude other processes, not other threads of this one.
        self._threads = threading.Lock()

    @classmethod
    def create(cls) -> SharedBuckets:
        """A new, empty table; its memory is freed when the last process closes ``fd``."""
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("telemetry-processor-rate-limits")
        else:  # no memfd (macOS): an unlinked temporary file serves as well
            with tempfile.TemporaryFile() as f:
                fd = os.dup(f.fileno())
        os.ftruncate(fd, SLOTS * _SLOT.size)
        return cls(fd)

    def take(
        self, project_id: int, rate: float, capacity: float, clock: Callable[[], float]
    ) -> float:
        """Take one token from the project's bucket; returns 0, or seconds until one is due."""
        key = project_id + 1
        home = (key * 2654435761) % SLOTS
        with self._threads:
            fcntl.lockf(self.fd, fcntl.LOCK_EX)
            try:
                now = clock()  # read under the lock, so no process sees time go backwards
                slot, tokens = self._find(key, home, rate, capacity, now)
                if tokens >= 1:
                    _SLOT.pack_into(self._map, slot, key, tokens - 1, now)
                    return 0.0
                _SLOT.pack_into(self._map, slot, key, tokens, now)
                return (1 - tokens) / rate
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def _find(
        self, key: int, home: int, rate: float, capacity: float, now: float
    ) -> tuple[int, float]:
        """The project's slot offset and its tokens now; a new bucket starts full."""
        reusable = None
        for i in range(_PROBE):
            offset = ((home + i) % SLOTS) * _SLOT.size
            held, tokens, updated = _SLOT.unpack_from(self._map, offset)
            refilled = min(capacity, tokens + max(now - updated, 0.0) * rate)
            if held == key:
                return offset, refilled
            # A free slot, or one whose bucket has refilled: a full bucket is the same as
            # none, so its project loses nothing when the slot is taken over.
            if reusable is None and (held == 0 or refilled >= capacity):
                reusable = offset
        # Every searched slot is busy (thousands of active projects): take over the home
        # slot. Its project's bucket starts again full, generous but never refusing wrongly.
        return (home * _SLOT.size if reusable is None else reusable), capacity

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)


class RateLimiter:
    def __init__(
        self,
        per_minute: int,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        buckets: SharedBuckets | None = None,
    ) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(burst, 1))
        self.clock = clock
        self.buckets = buckets if buckets is not None else SharedBuckets.create()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def check(self, project_id: int) -> None:
        if not self.enabled:
            return
        wait = self.buckets.take(project_id, self.rate, self.capacity, self.clock)
        if wait:
            raise RateLimited(
                f"project {project_id} is over its request rate limit", retry_after=wait
            )
