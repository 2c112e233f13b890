"""The newest ledgers' token transfers, in order, for subscribers and for queries that must see
ledgers the dataset has not committed yet. A ledger is added once (a follower that restarts
and processes a ledger again does not publish it twice), and old ledgers fall off the end.

It is also an index REST answers from: a query whose first ledger is held, with every ledger
after it held and extracted without a failure, is answered from memory (`select`), without
reading the dataset's files for those ledgers. A ledger with a failure (marked FAILED by the
follower) is left to the dataset, where a repair would put its rows."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable

import pyarrow as pa

from obsrvr_ray.query import Held, TransferQuery, decode_cursor
from obsrvr_ray.schema import TOKEN_TRANSFERS

FAILED = b"obsrvr.failed"  # schema metadata of a ledger's rows: the ledger had a failure


def mark_failed(rows: pa.Table) -> pa.Table:
    """`rows` of a ledger that had a failure: subscribers get them, REST reads that ledger from the dataset."""
    return rows.replace_schema_metadata({**(rows.schema.metadata or {}), FAILED: b"1"})


class RecentLedgers:
    def __init__(self, capacity: int = 720) -> None:  # ~1 hour of ledgers
        self.capacity = capacity
        self._ledgers: OrderedDict[int, pa.Table] = OrderedDict()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[int], None]] = []
        self._complete_from: int | None = None  # every ledger from here to the newest is held, without failure

    def add(self, sequence: int, rows: pa.Table) -> bool:
        """False when the ledger is not newer than the newest one held (a repeat)."""
        with self._lock:
            newest = next(reversed(self._ledgers)) if self._ledgers else None
            if newest is not None and sequence <= newest:
                return False
            failed = FAILED in (rows.schema.metadata or {})
            if failed:
                self._complete_from = sequence + 1
            elif newest is None or sequence != newest + 1:  # a hole before it
                self._complete_from = sequence
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

    def holds_from(self, sequence: int) -> bool:
        """Every ledger from `sequence` to the newest is held, none with a failure."""
        with self._lock:
            return self._complete_from is not None and bool(self._ledgers) and sequence >= max(
                self._complete_from, next(iter(self._ledgers)))

    def select(self, query: TransferQuery) -> Held | None:
        """The query's rows from memory, ledger by ledger until more than a page is found (the
        page and its next cursor are then settled); None unless every ledger from the query's
        first is held (`holds_from`). Ledgers past the newest held are not looked at: `through`
        says how far the rows reach."""
        low = query.start_ledger or 0
        if query.cursor is not None:
            low = max(low, decode_cursor(query.cursor)[0])
        high = query.end_ledger if query.end_ledger is not None else float("inf")
        with self._lock:
            if not self._ledgers or self._complete_from is None or low < max(self._complete_from,
                                                                             next(iter(self._ledgers))):
                return None
            ledgers = [(s, t) for s, t in self._ledgers.items() if low <= s <= high]
            through = min(high, next(reversed(self._ledgers)))
        parts, rows = [], 0
        for sequence, table in ledgers:
            part = query.apply(table) if table.num_rows else table
            parts.append(part)
            rows += part.num_rows
            if rows > query.limit:
                through = sequence
                break
        rows_table = pa.concat_tables(parts) if parts else TOKEN_TRANSFERS.empty_table()
        return Held(rows_table.replace_schema_metadata(None), through)

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
