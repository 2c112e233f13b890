"""The output's settings, and its plain-file exports beside the Delta tables.

The tables themselves (obsrvr_ray/table/) hold the rows; `formats` may add JSON lines and CSV
copies for readers that want plain files:

  <format>/<table>/<k=v>/.../part-<chunk>-g<gen>-<n>.<ext>   ledgers, transactions, token_transfers
  <format>/failures/part-<chunk>.<ext>                         the chunk's failures (latest generation)
  <format>/analytics/<name>.<ext>                              rewritten at the end of every run

Each file is written whole (rename, or one PUT) after its chunk's commit. File names are fixed by
chunk and generation, so writing them again (a rerun, a retried task) replaces a file with the
same bytes: a chunk's rows are in the exports once, as they are in the tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

from obsrvr_ray.objectstore import ObjectStore, S3Options
from obsrvr_ray.ranges import Range, range_key
from obsrvr_ray.schema import FAILURES
from obsrvr_ray.sinks.files import EXTENSIONS, encode_table
from obsrvr_ray.table.partitioning import keys_for, split

if TYPE_CHECKING:
    from obsrvr_ray.table.tableset import ChunkCommit

TABLE_FORMAT = "parquet"  # the Delta tables' files; any other format is a plain-file export
ANALYTICS = "analytics"


@dataclass(frozen=True)
class OutputSpec:
    location: str  # directory or s3://bucket/prefix
    formats: tuple[str, ...] = ("parquet",)
    compression: str = "zstd"
    partition_by: tuple[str, ...] = ("date",)
    max_rows_per_file: int = 1_000_000
    s3: S3Options = field(default_factory=S3Options)

    @property
    def exports(self) -> tuple[str, ...]:
        return tuple(f for f in self.formats if f != TABLE_FORMAT)


def data_path(fmt: str, table: str, directory: str, chunk: Range, generation: int, n: int) -> str:
    folder = f"{fmt}/{table}/{directory}/" if directory else f"{fmt}/{table}/"
    return f"{folder}part-{range_key(chunk)}-g{generation}-{n:03d}{EXTENSIONS[fmt]}"


def failures_path(fmt: str, chunk: Range) -> str:
    return f"{fmt}/failures/part-{range_key(chunk)}{EXTENSIONS[fmt]}"


def analytics_path(fmt: str, name: str) -> str:
    return f"{fmt}/{ANALYTICS}/{name}{EXTENSIONS[fmt]}"


def write_exports(store: ObjectStore, commit: ChunkCommit, spec: OutputSpec) -> dict[str, int]:
    """The chunk generation's plain files in every export format; files written per table."""
    written: dict[str, int] = {}
    for fmt in spec.exports:
        for name, table in commit.tables.items():
            for n, part in enumerate(split(table, keys_for(name, spec.partition_by), spec.max_rows_per_file)):
                path = data_path(fmt, name, part.directory, commit.chunk, commit.generation, n)
                store.put(path, encode_table(part.table, fmt, spec.compression))
                written[name] = written.get(name, 0) + 1
        if commit.failures.num_rows:
            store.put(failures_path(fmt, commit.chunk),
                      encode_table(commit.failures.cast(FAILURES), fmt, spec.compression))
            written["failures"] = written.get("failures", 0) + 1
        elif commit.generation:
            store.delete(failures_path(fmt, commit.chunk))  # a retry mended every failure of the chunk
    return written


def write_analytics_exports(store: ObjectStore, tables: dict[str, pa.Table], spec: OutputSpec) -> None:
    for fmt in spec.exports:
        for name, table in tables.items():
            store.put(analytics_path(fmt, name), encode_table(table, fmt, spec.compression))
