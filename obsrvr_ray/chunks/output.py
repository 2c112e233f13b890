"""A backfill output as a whole: which chunks hold failures, what --retry-failed reads again,
and the analytics tables merged from every chunk's partials."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from obsrvr_ray.analytics.transfers import HOURLY_PARTIAL, LARGEST_PARTIAL, merge
from obsrvr_ray.chunks.plan import WorkUnit, plan_retries
from obsrvr_ray.chunks.process import ChunkSettings, is_ledger_failure, result_of
from obsrvr_ray.errors import Failure
from obsrvr_ray.objectstore import ObjectStore
from obsrvr_ray.ranges import Range, contains, overlaps
from obsrvr_ray.sinks.dataset import Dataset
from obsrvr_ray.sinks.files import encode_table
from obsrvr_ray.sinks.layout import PARTIALS, analytics_path, failures_chunk


def failed_chunks(store: ObjectStore, fmt: str, requested: tuple[Range, ...]) -> set[Range]:
    """Chunks of the requested ledgers that hold failures (they have a failures file)."""
    chunks = (failures_chunk(key) for key in store.list(f"{fmt}/failures/"))
    return {c for c in chunks if c is not None and overlaps(requested, c)}


def plan_failed(dataset: Dataset, committed: dict[Range, int], chunks: set[Range], requested: tuple[Range, ...]
                ) -> tuple[list[WorkUnit], dict[Range, tuple[Failure, ...]]]:
    """Retry units for the failed ledgers of the requested range; the chunk's other failures
    (extraction errors, failed ledgers outside the range) are carried into the new generation."""
    retry: dict[Range, tuple[int, list[int]]] = {}
    carried: dict[Range, tuple[Failure, ...]] = {}
    for chunk in sorted(chunks):
        result = result_of(dataset.read_commit(chunk, committed[chunk]), committed_here=False)
        again = [f for f in result.failures
                 if is_ledger_failure(f) and f.sequence is not None and contains(requested, f.sequence)]
        retry[chunk] = (committed[chunk], [f.sequence for f in again])
        carried[chunk] = tuple(f for f in result.failures if f not in again)
    return plan_retries(requested, retry), carried


def write_analytics(store: ObjectStore, settings: ChunkSettings) -> dict[str, int]:
    """Merge every committed chunk's partials into the analytics tables (whole output, all
    formats). They are derived data: rebuilt at the end of each run, each file replaced whole."""
    def read(name: str, schema: pa.Schema) -> pa.Table:
        keys = list(store.list(f"{PARTIALS}/{name}/"))
        with ThreadPoolExecutor(max_workers=16) as pool:
            tables = [pq.read_table(io.BytesIO(data)) for data in pool.map(store.get, keys)]
        return pa.concat_tables(tables) if tables else schema.empty_table()

    tables = merge(read("hourly", HOURLY_PARTIAL), read("largest", LARGEST_PARTIAL), settings.top_transfers)
    for fmt in settings.output.formats:
        for name, table in tables.items():
            store.put(analytics_path(fmt, name), encode_table(table, fmt, settings.output.compression))
    return {name: table.num_rows for name, table in tables.items()}
