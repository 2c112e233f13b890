"""The two kinds of Ray worker of a backfill.

`ChunkReader` actors fetch a chunk's objects from the source, decompress and split them, and
return the ledgers as one Arrow table (into the object store). They are I/O bound, so they
reserve no CPU: a bounded pool of them bounds the load on the source and keeps each one's
connections and circuit-breaker state across chunks, while every core goes to `commit_chunk`
tasks, which decode, extract, write and commit (CPU bound, one core each).

Both survive a killed worker process: Ray restarts a reader and runs its pending reads again,
and runs a task again; the commit protocol makes the second attempt harmless.
"""

from __future__ import annotations

import pyarrow as pa
import ray

from obsrvr_ray.chunks.plan import WorkUnit
from obsrvr_ray.chunks.process import ChunkResult, ChunkSettings, process_unit
from obsrvr_ray.chunks.raw import read_unit
from obsrvr_ray.errors import Failure
from obsrvr_ray.sources.open import SourceOptions, open_source

RESTARTS = 3  # process deaths survived per reader and per task


@ray.remote(num_cpus=0, max_restarts=RESTARTS, max_task_retries=RESTARTS)
class ChunkReader:
    def __init__(self, source: str, options: SourceOptions) -> None:
        self.source = open_source(source, options)

    def read(self, unit: WorkUnit) -> pa.Table:
        return read_unit(self.source, unit)


@ray.remote(num_cpus=1, max_retries=RESTARTS, retry_exceptions=False)
def commit_chunk(unit: WorkUnit, raw: pa.Table, settings: ChunkSettings, carried: tuple[Failure, ...]) -> ChunkResult:
    return process_unit(unit, raw, settings, carried)
