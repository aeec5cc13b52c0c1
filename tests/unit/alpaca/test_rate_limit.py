"""Token bucket and backoff, on a fake clock."""

from __future__ import annotations

import random

import pytest

from venues.rate_limit import Backoff, TokenBucket


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_bucket_when_burst_spent_then_next_request_waits_one_token_interval():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_minute=200, burst=3, clock=clock, sleep=clock.sleep)
    assert all(bucket.try_acquire() for _ in range(3))
    assert not bucket.try_acquire()
    assert bucket.acquire()
    assert clock.now == pytest.approx(60 / 200)


def test_bucket_when_200_per_minute_then_a_minute_admits_about_400_with_a_full_burst():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_minute=200, clock=clock, sleep=clock.sleep)
    count = 0
    while clock.now < 60.0:
        bucket.acquire()
        count += 1
    assert 399 <= count <= 401  # the saved-up minute plus a minute's refill


def test_bucket_when_timeout_shorter_than_refill_then_refused():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_minute=60, burst=1, clock=clock, sleep=clock.sleep)
    bucket.acquire()
    assert bucket.acquire(timeout=0.5) is False


def test_backoff_when_failures_repeat_then_doubles_within_jitter_and_caps():
    backoff = Backoff(0.5, 4.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(6)]
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for delay, cap in zip(delays, caps):
        assert cap / 2 <= delay <= cap
    backoff.reset()
    assert backoff.next_delay() <= 0.5
