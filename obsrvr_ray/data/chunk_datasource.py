"""The backfill as a Ray Data pipeline: `ChunkDatasource` plans one read task per work unit and
runs the whole chunk in it (read, decode, validate, extract, filter, aggregate: the task engine's
steps, fused), yielding the chunk's commit as one row; `TableDatasink` (obsrvr_ray.data.table_datasink)
commits each row to the output's tables.

A chunk's commit is several tables (ledgers, transactions, token transfers, failures, analytics
partials); a Ray Data block holds one. So a chunk travels as one row whose columns carry each
table as Arrow IPC bytes: Arrow in, Arrow out, no Python rows, and nothing leaves the task when
Ray fuses the read with the write (it does, both being tasks of the same resources).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pyarrow as pa
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from obsrvr_ray.chunks.plan import WorkUnit
from obsrvr_ray.chunks.process import ChunkSettings, build_commit
from obsrvr_ray.chunks.raw import read_unit
from obsrvr_ray.data.ledger_datasource import worker_source
from obsrvr_ray.errors import Failure
from obsrvr_ray.schema import LEDGERS_TABLE, TRANSACTIONS_TABLE, TRANSFERS_TABLE
from obsrvr_ray.sources.open import SourceSpec
from obsrvr_ray.table.tableset import CHUNK_ROWS, ChunkCommit

_TABLE_FIELDS = (LEDGERS_TABLE, TRANSACTIONS_TABLE, TRANSFERS_TABLE, "failures", "volume", "largest")
# A chunk's key and summary as the chunks table (CHUNK_ROWS) has them, then the time the chunk took
# and its tables as Arrow IPC streams (null: none).
COMMIT_ROWS = pa.schema([
    *(CHUNK_ROWS.field(name) for name in ("chunk_start", "chunk_end", "generation", "ledgers", "events",
                                          "new_failures", "writer")),
    ("seconds", pa.float64()),  # time to read and extract the chunk
    *((f"{name}_ipc", pa.large_binary()) for name in _TABLE_FIELDS),
])


def _ipc(table: pa.Table | None) -> bytes | None:
    if table is None:
        return None
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _table(data: bytes | None) -> pa.Table | None:
    return None if data is None else pa.ipc.open_stream(data).read_all()


def commit_row(commit: ChunkCommit, seconds: float) -> pa.Table:
    """A chunk's commit as one COMMIT_ROWS row."""
    tables = {**commit.tables, "failures": commit.failures, "volume": commit.volume, "largest": commit.largest}
    return pa.Table.from_pylist([{
        "chunk_start": commit.chunk[0], "chunk_end": commit.chunk[1], "generation": commit.generation,
        "ledgers": commit.ledgers, "events": commit.events, "new_failures": commit.new_failures,
        "writer": commit.writer, "seconds": seconds,
        **{f"{name}_ipc": _ipc(tables.get(name)) for name in _TABLE_FIELDS},
    }], schema=COMMIT_ROWS)


def commits_of(block: pa.Table) -> Iterator[tuple[ChunkCommit, float]]:
    """The commits of a block of COMMIT_ROWS, with the seconds each took to build."""
    for row in block.to_pylist():
        data = {name: _table(row[f"{name}_ipc"]) for name in (LEDGERS_TABLE, TRANSACTIONS_TABLE, TRANSFERS_TABLE)}
        yield ChunkCommit(
            (row["chunk_start"], row["chunk_end"]), row["generation"],
            {name: table for name, table in data.items() if table is not None}, _table(row["failures_ipc"]),
            _table(row["volume_ipc"]), _table(row["largest_ipc"]), ledgers=row["ledgers"], events=row["events"],
            new_failures=row["new_failures"], writer=row["writer"],
        ), row["seconds"]


class ChunkDatasource(Datasource):
    """One read task per work unit, each yielding the unit's commit as one row."""

    def __init__(self, source: SourceSpec, settings: ChunkSettings, units: list[WorkUnit],
                 carried: Mapping[tuple[int, int], tuple[Failure, ...]] | None = None) -> None:
        super().__init__()
        self.source, self.settings, self.units = source, settings, units
        self.carried = dict(carried or {})

    def get_name(self) -> str:
        return "LedgerChunks"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        return [ReadTask(self._reader(unit), BlockMetadata(num_rows=1, size_bytes=None, exec_stats=None,
                                                           input_files=None), schema=COMMIT_ROWS)
                for unit in self.units]

    def _reader(self, unit: WorkUnit) -> Callable[[], Iterator[pa.Table]]:
        source, settings, carried = self.source, self.settings, self.carried.get(unit.chunk, ())

        def read_chunk() -> Iterator[pa.Table]:
            began = time.monotonic()
            commit = build_commit(unit, read_unit(worker_source(source), unit), settings, carried)
            yield commit_row(commit, time.monotonic() - began)

        return read_chunk
