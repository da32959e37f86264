"""A per-client-IP token bucket.

Written by hand because it is twenty lines and in-process is what's wanted: it protects one
replica from one noisy client; a cluster-wide limit belongs in the load balancer in front."""

from __future__ import annotations

import time


class RateLimiter:
    def __init__(self, per_minute: int, max_clients: int = 100_000) -> None:
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}
        self.configure(per_minute)

    def configure(self, per_minute: int) -> None:
        """A new limit, effective for the next request (buckets keep what they hold, capped)."""
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0

    def check(self, client: str) -> float:
        """0 when the request may proceed, else seconds until it may."""
        now = time.monotonic()
        tokens, last = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate
        if len(self._buckets) >= self.max_clients and client not in self._buckets:
            self._buckets.clear()  # bounded memory under a flood of distinct addresses
        self._buckets[client] = (tokens - 1, now)
        return 0.0
