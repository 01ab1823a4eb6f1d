"""Rate limits for what strangers can reach (login now, supporters' forms next).

Kept in memory: each web process counts on its own, so N processes allow up to N times the
limit. That still turns a password-guessing run of millions into a few hundred an hour.

Asking whether a key is blocked never adds it, and a full table sheds only what no longer
counts (expired keys, then keys below the limit): a flood of made-up names must not be able to
wipe the counters that hold a locked account or address.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque


def client_key(address: str) -> str:
    """What a per-address limit counts: an IPv4 address, or an IPv6 address's /64, since one
    home or server is given a whole /64 and can use a new address for every request."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class SlidingWindow:
    def __init__(self, limit: int, seconds: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.seconds = seconds
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    def _trim(self, hits: deque[float], now: float) -> deque[float]:
        while hits and hits[0] <= now - self.seconds:
            hits.popleft()
        return hits

    def blocked(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 if it may now."""
        now = time.monotonic()
        hits = self._trim(self._hits.get(key, deque()), now)
        return 0.0 if len(hits) < self.limit else hits[0] + self.seconds - now

    def hit(self, key: str) -> None:
        now = time.monotonic()
        if key not in self._hits and len(self._hits) >= self.max_keys:
            self._shed(now)
            if len(self._hits) >= self.max_keys:
                # Every key is blocked: keeping them matters more than counting a new one.
                return
        self._trim(self._hits.setdefault(key, deque()), now).append(now)

    def _shed(self, now: float) -> None:
        """Make room (a tenth of the table, so that a full table is not scanned on every hit):
        expired keys first, then keys under the limit, fewest hits first (a flood's made-up
        names have one each; an account someone is guessing at has more); never a blocked one."""
        room = max(1, self.max_keys // 10)
        for key in [k for k, hits in self._hits.items() if not self._trim(hits, now)]:
            del self._hits[key]
        under = sorted(
            (len(hits), n, k) for n, (k, hits) in enumerate(self._hits.items()) if len(hits) < self.limit
        )
        for _, _, key in under[: max(0, len(self._hits) - (self.max_keys - room))]:
            del self._hits[key]

    def clear(self, key: str) -> None:
        self._hits.pop(key, None)

    def __len__(self) -> int:
        return len(self._hits)
