"""The newest ledgers' token transfers, in order, for subscribers and for queries that must see
ledgers the dataset has not committed yet. A ledger is added once (a follower that restarts
and processes a ledger again does not publish it twice), and old ledgers fall off the end."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable

import pyarrow as pa

from obsrvr_ray.schema import TOKEN_TRANSFERS


class RecentLedgers:
    def __init__(self, capacity: int = 720) -> None:  # ~1 hour of ledgers
        self.capacity = capacity
        self._ledgers: OrderedDict[int, pa.Table] = OrderedDict()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[int], None]] = []

    def add(self, sequence: int, rows: pa.Table) -> bool:
        """False when the ledger is not newer than the newest one held (a repeat)."""
        with self._lock:
            if self._ledgers and sequence <= next(reversed(self._ledgers)):
                return False
            self._ledgers[sequence] = rows
            while len(self._ledgers) > self.capacity:
                self._ledgers.popitem(last=False)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(sequence)
        return True

    def listen(self, callback: Callable[[int], None]) -> None:
        """`callback(sequence)` after each ledger added, from the thread that added it."""
        with self._lock:
            self._listeners.append(callback)

    @property
    def latest(self) -> int | None:
        with self._lock:
            return next(reversed(self._ledgers)) if self._ledgers else None

    @property
    def oldest(self) -> int | None:
        with self._lock:
            return next(iter(self._ledgers)) if self._ledgers else None

    def after(self, sequence: int, limit: int = 100) -> list[tuple[int, pa.Table]]:
        """Ledgers newer than `sequence`, oldest first."""
        with self._lock:
            return [(s, t) for s, t in self._ledgers.items() if s > sequence][:limit]

    def table(self, after: int | None = None) -> pa.Table:
        """Every held row (newer than `after`) as one table."""
        with self._lock:
            tables = [t for s, t in self._ledgers.items() if after is None or s > after]
        return pa.concat_tables(tables) if tables else TOKEN_TRANSFERS.empty_table()


class AsyncWaiter:
    """Waits for ledgers newer than a given one: any number of coroutines wait on one event loop
    without holding a thread each (a thread per waiting subscriber would cap the fan-out at the
    size of a thread pool). Create it on the loop that awaits it."""

    def __init__(self, recent: RecentLedgers) -> None:
        self.recent = recent
        self._loop = asyncio.get_running_loop()
        self._next: asyncio.Future = self._loop.create_future()
        recent.listen(lambda _sequence: self._loop.call_soon_threadsafe(self._wake))

    def _wake(self) -> None:
        done, self._next = self._next, self._loop.create_future()
        done.set_result(None)

    async def wait_after(self, sequence: int, timeout: float) -> list[tuple[int, pa.Table]]:
        deadline = self._loop.time() + timeout
        while True:
            found = self.recent.after(sequence)
            remaining = deadline - self._loop.time()
            if found or remaining <= 0:
                return found
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._next), remaining)
