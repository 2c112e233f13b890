"""`TableDatasink`: a Ray Data sink that commits chunks to the output's Delta tables.

Each write task commits the chunks of its blocks (rows of obsrvr_ray.data.chunk_datasource.COMMIT_ROWS), each
exactly once (obsrvr_ray/table/tableset.py: keyed by chunk and generation in every table's log),
and writes the plain-file exports asked for. Committing per chunk, not once at the end, is what
lets a rerun after a crash resume from the last committed chunk rather than from the start.
`on_write_complete` finishes the run: the merged analytics tables are rewritten from every
committed chunk's partials.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import pyarrow as pa
from ray.data.datasource import Datasink

from obsrvr_ray.chunks.output import write_analytics
from obsrvr_ray.chunks.process import ChunkResult, ChunkSettings, commit_chunk
from obsrvr_ray.data.chunk_datasource import commits_of
from obsrvr_ray.objectstore import open_store
from obsrvr_ray.schema import TRANSFERS_TABLE
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.tableset import TableSet


@functools.lru_cache(maxsize=4)
def _tables(settings: ChunkSettings) -> TableSet:
    return TableSet(TableLocation(settings.output.location, settings.output.s3), settings.output.compression)


class TableDatasink(Datasink[list[ChunkResult]]):
    """Commits the chunks of a `ChunkDatasource` (or any COMMIT_ROWS dataset) to `settings.output`;
    the tables must exist (`TableSet.ensure`, which the backfill driver calls once)."""

    def __init__(self, settings: ChunkSettings) -> None:
        self.settings = settings
        self.results: list[ChunkResult] = []
        self.analytics: dict[str, int] = {}

    def get_name(self) -> str:
        return "DeltaTables"

    def write(self, blocks: Iterable[pa.Table], ctx: Any) -> list[ChunkResult]:
        out = []
        for block in blocks:
            for commit, seconds in commits_of(pa.table(block) if not isinstance(block, pa.Table) else block):
                began = time.monotonic() - seconds
                out.append(commit_chunk(commit, self.settings, began))
        return out

    def on_write_complete(self, write_result: Any) -> None:
        """Keep every task's chunk results, and rebuild the merged analytics once."""
        returned = getattr(write_result, "write_returns", write_result)
        self.results = [r for task in returned for r in (task or [])]
        if self.settings.analytics and TRANSFERS_TABLE in self.settings.tables:
            self.analytics = write_analytics(_tables(self.settings), open_store(self.settings.output.location,
                                                                                   self.settings.output.s3),
                                             self.settings)

    def summary(self) -> list[dict]:
        return [asdict(r) for r in self.results]
