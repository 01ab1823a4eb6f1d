"""Rate limits for what strangers can reach (login now, supporters' forms next).

Kept in memory: each web process counts on its own, so N processes allow up to N times the
limit. That still turns a password-guessing run of millions into a few hundred an hour.
"""

from __future__ import annotations

import time
from collections import deque


class SlidingWindow:
    def __init__(self, limit: int, seconds: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.seconds = seconds
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.seconds:
            hits.popleft()
        return hits

    def blocked(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 if it may now."""
        now = time.monotonic()
        hits = self._recent(key, now)
        return 0.0 if len(hits) < self.limit else hits[0] + self.seconds - now

    def hit(self, key: str) -> None:
        if len(self._hits) >= self.max_keys:  # a flood of addresses must not exhaust memory
            self._hits.clear()
        self._recent(key, time.monotonic()).append(time.monotonic())

    def clear(self, key: str) -> None:
        self._hits.pop(key, None)
