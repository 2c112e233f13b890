"""A backfill output as a whole: which chunks hold failures, what --retry-failed reads again,
whether its recorded settings may still change, and the analytics tables merged from every
chunk's partials."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from obsrvr_ray.analytics.transfers import EXACT, HOURLY_PARTIAL, LARGEST_PARTIAL, merge
from obsrvr_ray.chunks.job import LAYOUT_SETTINGS
from obsrvr_ray.chunks.plan import Plan, plan_retries
from obsrvr_ray.chunks.process import ChunkSettings, is_ledger_failure
from obsrvr_ray.errors import ConfigError, Failure
from obsrvr_ray.objectstore import ObjectStore
from obsrvr_ray.ranges import Range, contains, normalize, overlaps
from obsrvr_ray.sinks.layout import ANALYTICS, write_analytics_exports
from obsrvr_ray.table.tableset import CHUNKS_TABLE, LARGEST_PARTIALS, VOLUME_PARTIALS, SettingsChanged, Shape, TableSet


def chunk_failures(tables: TableSet, requested: tuple[Range, ...]) -> dict[Range, list[Failure]]:
    """The failures of every chunk of the requested ledgers that has any (latest generation)."""
    rows = tables.failures().to_pylist()
    out: dict[Range, list[Failure]] = {}
    for row in rows:
        chunk = (row["chunk_start"], row["chunk_end"])
        if overlaps(requested, chunk):
            out.setdefault(chunk, []).append(Failure(row["sequence"], row["object_key"], row["stage"], row["error"]))
    return out


def plan_failed(committed: dict[Range, int], failures: dict[Range, list[Failure]], requested: tuple[Range, ...]
                ) -> tuple[Plan, dict[Range, tuple[Failure, ...]]]:
    """Retry units for the failed ledgers of the requested range; the chunk's other failures
    (extraction errors, failed ledgers outside the range) are carried into the new generation."""
    retry: dict[Range, tuple[int, list[int]]] = {}
    carried: dict[Range, tuple[Failure, ...]] = {}
    for chunk, found in sorted(failures.items()):
        again = [f for f in found
                 if is_ledger_failure(f) and f.sequence is not None and contains(requested, f.sequence)]
        retry[chunk] = (committed[chunk], [f.sequence for f in again])
        carried[chunk] = tuple(f for f in found if f not in again)
    return plan_retries(requested, retry, normalize(committed)), carried


def ledgers_written(tables: TableSet) -> int:
    """Ledgers of the output that produced rows: those its chunks processed at their first
    generation (a retry reads again only ledgers of these) less those recorded as failed now."""
    chunks = tables.read(CHUNKS_TABLE, columns=["generation", "ledgers"])
    if chunks is None:
        return 0
    processed = sum(n for g, n in zip(*(chunks[c].to_pylist() for c in ("generation", "ledgers")), strict=True)
                    if g == 0)
    failed = {(row["chunk_start"], row["sequence"]) for row in tables.failures().to_pylist()
              if row["sequence"] is not None
              and is_ledger_failure(Failure(row["sequence"], row["object_key"], row["stage"], row["error"]))}
    return processed - len(failed)


def reset_settings(tables: TableSet, shape: Shape, changed: SettingsChanged, *, asked: bool) -> None:
    """Record new settings over those an output was written with, while no ledger has been
    written with them: every ledger failed (a lake naming the wrong network, say), so no row
    depends on them, and --retry-failed reads each one again with the new settings. Refused once
    a ledger is written (the rows would mix two sets of settings), and for the output's layout.
    `asked`: --reset-settings was given; without it the error says whether it would apply."""
    laid_out = [k for k in changed.differ if k in LAYOUT_SETTINGS]
    written = ledgers_written(tables)
    if laid_out or written:
        why = (f"{', '.join(laid_out)} lay the output out" if laid_out
               else f"{written:,} ledgers were written with the recorded ones")
        raise ConfigError(f"{changed.what}; {why}, so --reset-settings cannot apply: use the same settings or "
                          "another output path")
    if not asked:
        raise ConfigError(f"{changed.what}; no ledger was written with the recorded settings (every one failed): "
                          "rerun with --reset-settings --retry-failed to record the new ones and read the failed "
                          "ledgers again")
    tables.record_settings(shape)


def merged_analytics(tables: TableSet, top: int) -> dict[str, pa.Table]:
    """The analytics over every committed chunk, merged from the partial tables (each chunk's
    commit appended its partials, so this is incremental: the raw rows are not read again)."""
    volume = tables.read(VOLUME_PARTIALS)
    largest = tables.read(LARGEST_PARTIALS)
    if volume is None or volume.num_rows == 0:
        volume = HOURLY_PARTIAL.empty_table()
    else:
        volume = volume.drop_columns(["chunk_start"])
        volume = volume.set_column(volume.schema.get_field_index("volume_raw"), "volume",
                                   pc.cast(volume["volume_raw"], EXACT)).select(HOURLY_PARTIAL.names)
    largest = (LARGEST_PARTIAL.empty_table() if largest is None or largest.num_rows == 0
               else largest.drop_columns(["chunk_start"]).select(LARGEST_PARTIAL.names))
    return merge(volume.cast(HOURLY_PARTIAL), largest.cast(LARGEST_PARTIAL), top)


def write_analytics(tables: TableSet, store: ObjectStore, settings: ChunkSettings) -> dict[str, int]:
    """Rewrite the merged analytics tables (each a new version of `analytics/<name>`) and their
    plain-file exports. They are derived data: rebuilt at the end of each run."""
    merged = merged_analytics(tables, settings.top_transfers)
    for name, table in merged.items():
        tables.replace_table(f"{ANALYTICS}/{name}", table)
    write_analytics_exports(store, merged, settings.output)
    return {name: table.num_rows for name, table in merged.items()}
