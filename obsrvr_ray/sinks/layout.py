"""Where each file of a backfill output lives, and how one chunk's tables become those files.

  <format>/<table>/<k=v>/.../part-<chunk>-g<gen>-<n>.<ext>   ledgers, transactions, token_transfers
  <format>/failures/part-<chunk>.<ext>                         the chunk's failures (latest generation)
  <format>/analytics/<name>.<ext>                              merged from every chunk's partials
  _backfill/partials/<name>/part-<chunk>-g<gen>.parquet        a chunk's analytics partials

Each (format, table) is its own directory, so a reader points pyarrow.dataset or DuckDB at one
of them and never meets another table's or format's files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from obsrvr_ray.objectstore import S3Options
from obsrvr_ray.ranges import Range, parse_range_key, range_key
from obsrvr_ray.sinks.dataset import CONTROL, OutputFile
from obsrvr_ray.sinks.files import EXTENSIONS, encode_table
from obsrvr_ray.sinks.partitioning import keys_for, split

ANALYTICS = "analytics"
PARTIALS = f"{CONTROL}/partials"


@dataclass(frozen=True)
class OutputSpec:
    location: str  # directory or s3://bucket/prefix
    formats: tuple[str, ...] = ("parquet",)
    compression: str = "zstd"
    partition_by: tuple[str, ...] = ("date",)
    max_rows_per_file: int = 1_000_000
    s3: S3Options = field(default_factory=S3Options)


def data_path(fmt: str, table: str, directory: str, chunk: Range, generation: int, n: int) -> str:
    folder = f"{fmt}/{table}/{directory}/" if directory else f"{fmt}/{table}/"
    return f"{folder}part-{range_key(chunk)}-g{generation}-{n:03d}{EXTENSIONS[fmt]}"


def failures_path(fmt: str, chunk: Range) -> str:
    return f"{fmt}/failures/part-{range_key(chunk)}{EXTENSIONS[fmt]}"


def failures_chunk(key: str) -> Range | None:
    """The chunk a failures file belongs to, from its key."""
    parts = key.split("/")
    if len(parts) != 3 or parts[1] != "failures" or not parts[2].startswith("part-"):
        return None
    return parse_range_key(parts[2].removeprefix("part-").split(".")[0])


def partial_path(name: str, chunk: Range, generation: int) -> str:
    return f"{PARTIALS}/{name}/part-{range_key(chunk)}-g{generation}.parquet"


def analytics_path(fmt: str, name: str) -> str:
    return f"{fmt}/{ANALYTICS}/{name}{EXTENSIONS[fmt]}"


def is_derived(key: str) -> bool:
    """Files rebuilt from the others at the end of every run, outside the commit protocol."""
    parts = key.split("/")
    return len(parts) == 3 and parts[1] == ANALYTICS


def chunk_files(
    chunk: Range, generation: int, tables: dict[str, pa.Table], failures: pa.Table, partials: dict[str, pa.Table],
    spec: OutputSpec,
) -> list[OutputFile]:
    """Every file one chunk generation writes (empty tables write nothing)."""
    files = []
    for fmt in spec.formats:
        for name, table in tables.items():
            parts = split(table, keys_for(name, spec.partition_by), spec.max_rows_per_file)
            files.extend(
                OutputFile(data_path(fmt, name, part.directory, chunk, generation, n),
                           encode_table(part.table, fmt, spec.compression), part.table.num_rows, name)
                for n, part in enumerate(parts)
            )
        if failures.num_rows:
            files.append(OutputFile(failures_path(fmt, chunk), encode_table(failures, fmt, spec.compression),
                                    failures.num_rows, "failures"))
    files.extend(
        OutputFile(partial_path(name, chunk, generation), encode_table(table, "parquet"), table.num_rows, name)
        for name, table in partials.items()
        if table.num_rows
    )
    return files
