"""Pacing: token buckets per target and one for the whole dispatcher.

A target's bucket limits how fast letters reach that official's mailbox or fax line; the global
bucket limits what this process puts on the wire. Deliveries are claimed only as tokens allow, so
a lease never sits waiting on a slow target.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence


class TokenBucket:
    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.updated = clock()

    def available(self) -> float:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return self.tokens

    def take(self, n: float) -> None:
        self.available()
        self.tokens -= n

    def give_back(self, n: float) -> None:
        self.available()
        self.tokens = min(self.burst, self.tokens + n)

    def wait_for_one(self) -> float:
        missing = 1 - self.available()
        return max(0.0, missing / self.rate)


class Pacer:
    def __init__(
        self,
        rate_per_target: float,
        burst_per_target: int,
        rate_global: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_per_target = rate_per_target
        self.burst_per_target = burst_per_target
        self.clock = clock
        self.global_bucket = TokenBucket(rate_global, max(rate_global, 1.0), clock)
        self.buckets: dict[str, TokenBucket] = {}

    def _bucket(self, key: str) -> TokenBucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(self.rate_per_target, self.burst_per_target, self.clock)
        return bucket

    def budget(self, keys: Sequence[str], cap: int) -> int:
        """How many letters to these keys may start now (at most ``cap``)."""
        tokens = min([self.global_bucket.available(), *(self._bucket(k).available() for k in keys)])
        return max(0, min(cap, math.floor(tokens)))

    def take(self, keys: Sequence[str], n: int) -> None:
        self.global_bucket.take(n)
        for key in keys:
            self._bucket(key).take(n)

    def give_back(self, keys: Sequence[str], n: int) -> None:
        """Return tokens taken for letters that were not claimed after all."""
        self.global_bucket.give_back(n)
        for key in keys:
            self._bucket(key).give_back(n)

    def wait(self, keys: Sequence[str]) -> float:
        """Seconds until one more letter to these keys may start."""
        return max([self.global_bucket.wait_for_one(), *(self._bucket(k).wait_for_one() for k in keys)])
