"""Token-bucket rate limiting per client (an API key, a JWT subject or an address).

Each client's bucket holds up to `burst` tokens and refills at `rate` tokens a second; a call
takes one. State is two numbers per client, updated in O(1) under one lock, and kept for at most
`max_clients` clients: the least recently seen is dropped first. A dropped client comes back
with a full bucket, which only matters for one idle longer than every other tracked client.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate: float, burst: int, max_clients: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate must be > 0, burst and max_clients >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # client -> [tokens, time of last update]
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0.0 when the call may go ahead (a token is taken), else the seconds until one is available."""
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(client)
            if bucket is None:
                if len(self._buckets) >= self.max_clients:
                    self._buckets.popitem(last=False)
                bucket = self._buckets[client] = [self.burst, now]
            else:
                self._buckets.move_to_end(client)
                bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
                bucket[1] = now
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
                return 0.0
            return (1.0 - bucket[0]) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)
