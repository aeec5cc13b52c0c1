"""Pacing of requests to Alpaca: a client-side token bucket and exponential backoff with jitter.

Alpaca allows 200 REST requests per minute per account and answers 429 beyond; spending the budget
on the client side keeps a burst of orders (8 symbols rebalanced on one bar) from being throttled
by the server in the middle of the burst. Reconnects and retries back off exponentially with
"equal jitter" (half fixed, half random) so several clients that lost the server at the same
moment do not come back in lockstep.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Callable


_ONE = 1.0 - 1e-9  # a token refilled up to float rounding is a token


class TokenBucket:
    """``rate_per_minute`` tokens a minute, at most ``burst`` saved up. Thread-safe.

    :meth:`acquire` blocks until a token is free (or ``timeout`` passes); the default burst is the
    whole minute's budget, which matches a server counting requests per rolling minute.
    """

    def __init__(self, rate_per_minute: float = 200.0, burst: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if rate_per_minute <= 0:
            raise ValueError(f"rate_per_minute must be > 0, got {rate_per_minute}")
        self.rate_per_s = rate_per_minute / 60.0
        self.capacity = float(burst if burst is not None else rate_per_minute)
        if self.capacity < 1:
            raise ValueError(f"burst must be >= 1 token, got {self.capacity}")
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()
        self.waited_s = 0.0  # total time callers spent waiting for a token

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate_per_s)
        self._last = now

    def try_acquire(self) -> bool:
        with self._lock:
            self._refill()
            if self._tokens >= _ONE:
                self._tokens = max(0.0, self._tokens - 1.0)
                return True
            return False

    def acquire(self, timeout: float | None = None) -> bool:
        """Take one token, waiting for it; False if ``timeout`` seconds pass first."""
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= _ONE:
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return True
                # at least 1 us: a wait below the clock's resolution would never refill anything
                wait = max((1.0 - self._tokens) / self.rate_per_s, 1e-6)
            if deadline is not None:
                left = deadline - self._clock()
                if left <= 0:
                    return False
                wait = min(wait, left)
            self.waited_s += wait
            self._sleep(wait)

    @property
    def available(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens


class Backoff:
    """Delays for consecutive failures: ``initial * 2**(n-1)`` capped at ``maximum``, with equal
    jitter (a delay ``d`` becomes uniform in ``[d/2, d]``). :meth:`reset` after a success."""

    def __init__(self, initial_s: float = 0.5, maximum_s: float = 30.0, *, rng: random.Random | None = None):
        if initial_s <= 0 or maximum_s < initial_s:
            raise ValueError(f"need 0 < initial_s <= maximum_s, got {initial_s}, {maximum_s}")
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        self.failures += 1
        capped = min(self.maximum_s, self.initial_s * 2 ** min(self.failures - 1, 30))
        return capped / 2 + self._rng.random() * capped / 2

    def reset(self) -> None:
        self.failures = 0
