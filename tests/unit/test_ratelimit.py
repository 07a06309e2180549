"""Token buckets in shared memory: one limit per project, whichever process takes."""

from __future__ import annotations

import os

import pytest

from processor.errors import RateLimited
from processor.ingest.ratelimit import SLOTS, RateLimiter, SharedBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate():
    clock = Clock()
    limiter = RateLimiter(60, 2, clock)  # one token a second
    limiter.check(1)
    limiter.check(1)
    with pytest.raises(RateLimited) as err:
        limiter.check(1)
    assert err.value.retry_after == pytest.approx(1.0)
    clock.now += 1.0
    limiter.check(1)


def test_projects_have_their_own_buckets():
    limiter = RateLimiter(60, 1, Clock())
    limiter.check(1)
    limiter.check(2)
    with pytest.raises(RateLimited):
        limiter.check(1)


def test_two_holders_of_the_table_share_one_bucket():
    clock = Clock()
    first = SharedBuckets.create()
    second = SharedBuckets(os.dup(first.fd))  # as another worker process holds it
    a = RateLimiter(60, 3, clock, buckets=first)
    b = RateLimiter(60, 3, clock, buckets=second)
    a.check(7)
    b.check(7)
    a.check(7)
    with pytest.raises(RateLimited):
        b.check(7)
    first.close()
    second.close()


def test_a_child_process_takes_from_the_same_bucket():
    clock = Clock()
    buckets = SharedBuckets.create()
    limiter = RateLimiter(60, 2, clock, buckets=buckets)
    pid = os.fork()
    if pid == 0:  # the child takes both tokens
        try:
            limiter.check(3)
            limiter.check(3)
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    with pytest.raises(RateLimited):
        limiter.check(3)
    buckets.close()


def test_more_projects_than_slots_still_limits_the_busy_one():
    clock = Clock()
    limiter = RateLimiter(60, 1, clock)
    limiter.check(0)
    for project in range(1, 2 * SLOTS):  # idle projects take over only refilled slots
        limiter.check(project)
    clock.now += 0.5
    with pytest.raises(RateLimited):
        limiter.check(2 * SLOTS - 1)


def test_zero_rate_disables_the_limit():
    limiter = RateLimiter(0, 1, Clock())
    for _ in range(10):
        limiter.check(1)
