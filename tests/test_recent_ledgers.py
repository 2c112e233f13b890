"""Subscribers' long polls on the follower's newest ledgers: hundreds of them wait on one event
loop, wake when a ledger arrives from the follower's thread, and time out empty otherwise."""

from __future__ import annotations

import asyncio
import threading
import time

import pyarrow as pa

from obsrvr_ray.live.recent import AsyncWaiter, RecentLedgers
from obsrvr_ray.schema import TOKEN_TRANSFERS


def test_many_waiters_wake_on_each_ledger_without_a_thread_each():
    recent = RecentLedgers()
    recent.add(1, TOKEN_TRANSFERS.empty_table())

    async def scenario() -> tuple[list, float, int]:
        waiter = AsyncWaiter(recent)
        threads_before = threading.active_count()
        waiting = [asyncio.create_task(waiter.wait_after(1, timeout=30)) for _ in range(300)]
        await asyncio.sleep(0.2)
        threads_while_waiting = threading.active_count() - threads_before
        began = time.monotonic()
        threading.Thread(target=recent.add, args=(2, TOKEN_TRANSFERS.empty_table())).start()
        results = await asyncio.gather(*waiting)
        return results, time.monotonic() - began, threads_while_waiting

    results, seconds, threads = asyncio.run(scenario())
    # 300 waiters, no thread each; the count is the process's, so a server thread of an earlier
    # test that ends (or starts) meanwhile moves it by one or two
    assert threads < 5
    assert seconds < 5
    assert all([seq for seq, _ in found] == [2] for found in results)


def test_a_wait_returns_what_is_already_there_or_nothing_after_its_timeout():
    recent = RecentLedgers()
    table = pa.Table.from_pylist([], schema=TOKEN_TRANSFERS)
    for seq in (5, 6, 7):
        recent.add(seq, table)

    async def scenario():
        waiter = AsyncWaiter(recent)
        ready = await waiter.wait_after(5, timeout=5)
        began = time.monotonic()
        empty = await waiter.wait_after(7, timeout=0.3)
        return ready, empty, time.monotonic() - began

    ready, empty, waited = asyncio.run(scenario())
    assert [seq for seq, _ in ready] == [6, 7]
    assert empty == [] and 0.25 <= waited < 3


def test_the_window_answers_queries_only_from_where_every_later_ledger_is_held_without_failure():
    """REST reads a range from memory only when memory has all of it: a hole (a follower that
    restarted further on) or a ledger with a failure (whose rows a repair may write to the
    dataset) leaves the ranges reaching back over it to the dataset."""
    from obsrvr_ray.live.recent import mark_failed
    from obsrvr_ray.query import TransferQuery

    recent = RecentLedgers()
    table = TOKEN_TRANSFERS.empty_table()
    for seq in (5, 6):
        recent.add(seq, table)
    recent.add(7, mark_failed(table))
    recent.add(8, table)
    recent.add(10, table)  # 9 never published
    assert [recent.holds_from(s) for s in (5, 8, 9, 10, 11)] == [False, False, False, True, True]
    assert recent.select(TransferQuery(start_ledger=8)) is None
    held = recent.select(TransferQuery(start_ledger=10))
    assert held is not None and held.through == 10 and held.rows.num_rows == 0
