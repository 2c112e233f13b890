"""What every source yields: one record per ledger, holding its bytes or the reason it has none."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

from obsrvr_ray.errors import LedgerError
from obsrvr_ray.ledger.decode import decode_ledger
from obsrvr_ray.ledger.from_etl import ledger_from_etl_lines
from obsrvr_ray.ledger.model import Ledger
from obsrvr_ray.ranges import Grid
from obsrvr_ray.resilience import Bulkhead

T = TypeVar("T")

CLOSE_META = "close_meta"  # data is one XDR LedgerCloseMeta
ETL = "etl"  # data is the stellar-etl ledger_transactions JSON lines of one ledger


@dataclass(frozen=True)
class LedgerRecord:
    sequence: int | None  # None only for an error that no ledger can be named for
    origin: str  # object key, RPC URL or file the bytes came from
    data: bytes | None = None
    kind: str = CLOSE_META
    error: LedgerError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class LedgerSource(Protocol):
    """A ledger range in, one LedgerRecord per ledger out, in sequence order.

    A source says what a run needs to know before it reads (its network, the grid of its objects,
    its newest ledger), so planners ask it rather than look inside it. Every source has every
    member. Workers open their own copy from a `sources.open.SourceSpec`. `end=None` follows new
    ledgers until the caller stops iterating.
    """

    description: str

    @property
    def network_passphrase(self) -> str | None:
        """The network the source declares (lake config, RPC getNetwork), if it declares one."""

    @property
    def grid(self) -> Grid:
        """The grid of the objects the source reads whole (a lake's batch files and partitions;
        one ledger for a source of single ledgers). A plan's chunks are whole cells of it, so
        each chunk is read on its own and no object is fetched for two chunks."""

    @property
    def every_ledger(self) -> bool:
        """Whether records(start, end) yields exactly one record per ledger of the range (an
        error record for a ledger it lacks), so a chunk's row count is known before reading."""

    @property
    def bulkhead(self) -> Bulkhead | None:
        """The bound on calls in flight to the source, for metrics (None: it makes no calls)."""

    def earliest(self) -> int | None:
        """The oldest ledger the source holds, when it can tell without searching (a file it
        reads whole); None when it cannot, and a range must then name its start."""

    def latest(self) -> int | None:
        """The newest ledger the source holds now (None when it holds none), found cheaply: a
        range is checked against it before anything is planned, so a range past it is refused
        at once instead of failing, or being waited for, ledger by ledger."""

    def records(self, start: int, end: int | None) -> Iterator[LedgerRecord]:
        """Records for every ledger of [start, end] (or from start on when end is None)."""

    def close(self) -> None:
        """Release connections and threads."""


def ordered_prefetch(
    items: Iterable[T], fetch: Callable[[T], list[LedgerRecord]], *, workers: int
) -> Iterator[list[LedgerRecord]]:
    """Run `fetch` on up to `workers` items at once, yielding results in input order.

    Fetches are I/O (object GETs, HTTP) and decompression, which release the GIL.
    """
    if workers <= 1:
        for item in items:
            yield fetch(item)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        window: deque[Future] = deque()
        it = iter(items)
        for item in it:
            window.append(pool.submit(fetch, item))
            if len(window) >= workers:
                break
        while window:
            done = window.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                window.append(pool.submit(fetch, nxt))
            yield done


def decode_record(record: LedgerRecord, passphrase: str, decoder: str = "fast") -> Ledger:
    """The record's ledger, decoded and validated; raises the LedgerError that stops it.
    `decoder`: 'fast' (ours) or 'reference' (stellar-sdk's)."""
    if record.error is not None:
        raise record.error
    assert record.data is not None and record.sequence is not None
    if record.kind == ETL:
        return ledger_from_etl_lines(
            record.data.split(b"\n"), passphrase, sequence=record.sequence, origin=record.origin, decoder=decoder
        )
    return decode_ledger(record.data, passphrase, sequence=record.sequence, origin=record.origin, decoder=decoder)
