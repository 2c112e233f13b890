"""A ledger range as a `ray.data.Dataset` (`read_ledgers`, `LedgerDatasource`); the extraction
that follows it is obsrvr_ray.data.extract_step.

This module is the Ray shell only: the reading (`chunks.raw.read_unit`), the planning
(`chunks.plan`) and the extraction (`chunks.process.extract`) are the backfill's own code, plain
Python over Arrow.

How the rows are cut: `LedgerDatasource` plans the range on the backfill's grid (chunks of
`chunk_size` ledgers, rounded up to whole lake objects and never crossing a lake partition), and
makes one read task, hence one block, per chunk. The chunk is the scope of the hash-chain check:
every ledger is checked against the one before it inside the chunk, and the first one against the
ledger before the chunk, which the read task fetches too (as the backfill's readers do).

That extra ledger is not a row of the dataset (a ledger never shows twice, `count()` is the number
of ledgers): its LedgerCloseMeta rides in the `link_data` column of the chunk's first row, null
everywhere else and null when the ledger before the chunk is outside the range (the first chunk),
failed, or is not a LedgerCloseMeta. Drop the column (`ds.drop_columns(["link_data"])`) when
writing the raw ledgers elsewhere; the extraction needs it.

The extraction needs each chunk whole from its first row, so it runs with `batch_size=None` (a
batch is a block, a block is a chunk); a batch holding several whole chunks is fine too. Rows of
a chunk that do not start at its first row (Ray cut the block: it slices blocks over 1.5 x
`DataContext.target_max_block_size`, 192 MiB by default, about 190 recent pubnet ledgers) raise
`ChunkSplitError` rather than leave a link of the chain unchecked. A prefix of a chunk (`limit()`)
is whole from its first row and is fine.

Failures are never dropped: a ledger that cannot be read, decoded or validated produces no rows
and the other ledgers' rows are still produced; each failure is recorded in a `FailureLog` (a
small Ray actor), keyed by chunk so a retried task replaces rather than repeats its record.
`FailureLog.table()` returns them in the backfill's `failures` schema once the dataset has run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data import Dataset
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from obsrvr_ray.chunks.plan import WorkUnit, plan
from obsrvr_ray.chunks.raw import RAW_SCHEMA, read_unit
from obsrvr_ray.network import resolve_network, resolve_passphrase
from obsrvr_ray.ranges import check_range
from obsrvr_ray.sources.base import CLOSE_META, LedgerSource
from obsrvr_ray.sources.open import SourceOptions, SourceSpec

# The rows of `read_ledgers`: the backfill's raw ledgers (chunks.raw.RAW_SCHEMA), one per ledger,
# with what the extraction needs to check the hash chain and decode them on its own.
LEDGER_ROWS = pa.schema(
    [
        *RAW_SCHEMA,  # sequence, origin, kind, data (LedgerCloseMeta bytes), stage and error (a failed read)
        ("network_passphrase", pa.string()),  # the network the ledger belongs to (transaction hashes commit to it)
        ("chunk_start", pa.int64()),  # the chunk (read task) the ledger was read in: the chain is checked
        ("chunk_end", pa.int64()),  # within it, and into it from the ledger before it
        ("chunk_row", pa.int32()),  # 0-based position in the chunk: a batch must hold a chunk from row 0
        ("link_data", pa.large_binary()),  # first row only: LedgerCloseMeta of the ledger before the chunk
    ]
)

# Recent pubnet ledgers are 0.8-1.3 MB of LedgerCloseMeta (the 20 protocol-26 test ledgers average
# 0.99 MB): the planner's estimate of a ledger row, which sizes Ray Data's memory budget.
LEDGER_BYTES = 1 << 20


class LedgerDatasource(Datasource):
    """The ledgers [start, end] of a source, one read task per chunk of the backfill's grid.

    The source is opened once here, on the driver, to learn what it declares (its network, the
    grid of its objects); each read task opens its own from the `SourceSpec`, in its worker
    process (one per process, reused).
    """

    def __init__(self, source: str, start: int, end: int, *, options: SourceOptions | None = None,
                 chunk_size: int = 64, network: str | None = None) -> None:
        super().__init__()
        check_range(start, end, start_name="start", end_name="end")
        requested = ((start, end),)
        opts = options or SourceOptions()
        if network:
            opts = replace(opts, network_passphrase=resolve_passphrase(network))
        self.source = SourceSpec(source, opts)
        opened = self.source.open()
        try:
            # As the backfill (chunks.job.resolve): an explicit network wins, then the source's own.
            self.network_passphrase = resolve_network(opts.network_passphrase, opened.network_passphrase)
            self.grid = opened.grid.chunks(chunk_size)
            self.description = opened.description
            self.exact_counts = opened.every_ledger  # a chunk's row count known before reading
        finally:
            opened.close()
        self.units: list[WorkUnit] = list(plan(requested, (), self.grid))  # Ray Data takes its read tasks up front

    def get_name(self) -> str:
        return "Ledgers"

    def estimate_inmemory_data_size(self) -> int:
        return sum(_rows(unit) * LEDGER_BYTES for unit in self.units)

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        """One task per chunk, whatever the parallelism asked (read_ledgers asks for exactly that)."""
        tasks = []
        for index, unit in enumerate(self.units):
            metadata = BlockMetadata(num_rows=unit.ledgers if self.exact_counts else None,
                                     size_bytes=_rows(unit) * LEDGER_BYTES,
                                     exec_stats=None, input_files=None)
            read = _chunk_reader(self.source, self.network_passphrase, unit, first=index == 0)
            tasks.append(ReadTask(read, metadata, schema=LEDGER_ROWS, per_task_row_limit=per_task_row_limit))
        return tasks


def read_ledgers(source: str, start: int, end: int, *, options: SourceOptions | None = None, chunk_size: int = 64,
                 network: str | None = None, **read_args: Any) -> Dataset:
    """The ledgers [start, end] of `source` (a lake directory, s3://…, an RPC URL or etl:FILE) as
    a Dataset of `LEDGER_ROWS`, one row per ledger (a ledger that could not be read is a row with
    its `stage` and `error` and no `data`), one block per chunk of `chunk_size` ledgers.

    `network`: a name (pubnet, testnet, …) or passphrase; default what the source declares, else
    pubnet. `read_args` go to `ray.data.read_datasource` (num_cpus, concurrency, ray_remote_args, …).
    A source outage the source's own retries did not clear raises from the read task, which fails
    the dataset; `ray_remote_args={"retry_exceptions": [TransientSourceError]}` lets Ray retry it.
    """
    if "override_num_blocks" in read_args or "parallelism" in read_args:
        raise TypeError("read_ledgers makes one block per chunk: set chunk_size, not the number of blocks")
    datasource = LedgerDatasource(source, start, end, options=options, chunk_size=chunk_size, network=network)
    # Exactly one block per read task: fewer tasks than Ray's default parallelism would make it
    # split every task's block, cutting the chunks the extraction checks the chain over.
    return ray.data.read_datasource(datasource, override_num_blocks=len(datasource.units), **read_args)


def _rows(unit: WorkUnit) -> int:
    return unit.ledgers + sum(1 for s in unit.segments if s.link)


@functools.lru_cache(maxsize=4)
def worker_source(spec: SourceSpec) -> LedgerSource:
    """One source per worker process (its clients, breaker and bulkhead), reused across chunks."""
    return spec.open()


def _chunk_reader(spec: SourceSpec, passphrase: str, unit: WorkUnit, *,
                  first: bool) -> Callable[[], Iterator[pa.Table]]:
    def read_chunk() -> Iterator[pa.Table]:
        yield ledger_rows(read_unit(worker_source(spec), unit), unit, passphrase, keep_unnamed=first)

    return read_chunk


def ledger_rows(raw: pa.Table, unit: WorkUnit, passphrase: str, *, keep_unnamed: bool = True) -> pa.Table:
    """A unit's `read_unit` table as `LEDGER_ROWS`: the ledger before each linked segment leaves the
    rows for the `link_data` of the segment's first row. `keep_unnamed`: keep the errors no ledger
    can be named for (an etl file's bad lines, which every chunk of the file would repeat)."""
    sequence = raw["sequence"]
    links = {s.start - 1: s.start for s in unit.segments if s.link}
    keep = pc.invert(pc.fill_null(pc.is_in(sequence, pa.array(list(links), pa.int64())), False))
    if not keep_unnamed:
        keep = pc.and_(keep, pc.is_valid(sequence))
    rows = raw.filter(keep)
    link_data: dict[int, bytes] = {}
    for row in raw.filter(pc.invert(keep)).to_pylist():
        if row["sequence"] in links and row["kind"] == CLOSE_META and row["error"] is None and row["data"] is not None:
            link_data[links[row["sequence"]]] = row["data"]
    n = rows.num_rows
    columns = {
        **{name: rows[name] for name in RAW_SCHEMA.names},
        "network_passphrase": pa.array([passphrase] * n, pa.string()),
        "chunk_start": pa.array([unit.chunk[0]] * n, pa.int64()),
        "chunk_end": pa.array([unit.chunk[1]] * n, pa.int64()),
        "chunk_row": pa.array(range(n), pa.int32()),
        "link_data": pa.array([link_data.get(s) for s in rows["sequence"].to_pylist()], pa.large_binary()),
    }
    return pa.table(columns, schema=LEDGER_ROWS)
