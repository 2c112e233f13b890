"""The output as Delta Lake tables: one table per kind of row, each committed by delta-rs.

  <root>/ledgers, transactions, token_transfers   the rows (stellar-etl / Hubble columns)
  <root>/failures                                 each chunk's failures after its latest generation
  <root>/chunks                                   one row per committed chunk generation: the run's ledger
  <root>/volume_partials, largest_partials        each chunk's analytics partials (merged by analytics)
  <root>/analytics/<name>                         the merged analytics tables, rewritten by each run

Why Delta: docs/decisions/0001-table-format.md. What it gives every reader (ours, DuckDB, Spark,
Athena, Polars, pandas, Ray Data): committed snapshots only, history, time travel, compaction.

Exactly once. A chunk generation is committed table by table, in `COMMIT_ORDER`, each commit
carrying a Delta application transaction (`txn` action: app id = the chunk's range, version =
its generation). A commit is skipped when the table's log already records that version, and two
writers racing on the same chunk cannot both commit: delta-rs refuses the second with a
concurrent-transaction conflict, after which the log shows the winner. The `chunks` row is
committed last, so a chunk is done when it has one; a crash between two tables' commits leaves
a chunk without it, and the rerun commits only what is missing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from obsrvr_ray.analytics.transfers import HOURLY_PARTIAL, LARGEST_PARTIAL
from obsrvr_ray.errors import ConfigError, ObsrvrError
from obsrvr_ray.ranges import Range, range_key
from obsrvr_ray.schema import FAILURES, LEDGERS_TABLE, TABLES, TRANSACTIONS_TABLE, TRANSFERS_TABLE
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.partitioning import partition_columns, with_partition_columns

FAILURES_TABLE = "failures"
CHUNKS_TABLE = "chunks"
VOLUME_PARTIALS = "volume_partials"
LARGEST_PARTIALS = "largest_partials"
ANALYTICS = "analytics"

_CHUNK_KEY = [("chunk_start", pa.int64()), ("chunk_end", pa.int64()), ("generation", pa.int64())]
FAILURE_ROWS = pa.schema([*_CHUNK_KEY, *FAILURES])
CHUNK_ROWS = pa.schema(
    [
        *_CHUNK_KEY,
        ("ledgers", pa.int64()),  # ledgers this generation processed (ok + failed)
        ("events", pa.int64()),  # token-transfer events extracted, before the filter
        ("ledger_rows", pa.int64()),
        ("transaction_rows", pa.int64()),
        ("transfer_rows", pa.int64()),
        ("failures", pa.int64()),  # the chunk's failures after this generation
        ("new_failures", pa.int64()),  # found by this generation
        ("writer", pa.string()),  # backfill, live
        ("committed_at", pa.timestamp("us", tz="UTC")),
    ]
)
# Delta has no decimal beyond 38 digits: the partials keep exact sums as text.
VOLUME_ROWS = pa.schema([("chunk_start", pa.int64()), *(f if f.name != "volume" else pa.field("volume_raw", pa.string())
                                                          for f in HOURLY_PARTIAL)])
LARGEST_ROWS = pa.schema([("chunk_start", pa.int64()), *LARGEST_PARTIAL])

# The order a chunk generation is committed in; CHUNKS_TABLE last marks it done.
COMMIT_ORDER = (LEDGERS_TABLE, TRANSACTIONS_TABLE, TRANSFERS_TABLE, VOLUME_PARTIALS, LARGEST_PARTIALS, FAILURES_TABLE,
                CHUNKS_TABLE)
CONTROL_SCHEMAS = {FAILURES_TABLE: FAILURE_ROWS, CHUNKS_TABLE: CHUNK_ROWS, VOLUME_PARTIALS: VOLUME_ROWS,
                   LARGEST_PARTIALS: LARGEST_ROWS}


class TableError(ObsrvrError):
    """A table cannot be read or committed (not a Delta table, unreachable, a conflict that did
    not resolve)."""


# What a commit meets when the store fails it: our errors naming the table or object, delta-rs's
# (a conflict, a broken log) and OSError (delta-rs reports an unreachable store so). Anything
# else out of a commit is a bug.
STORE_ERRORS = (ObsrvrError, DeltaError, OSError)


class SettingsChanged(ConfigError):
    """A writer's settings differ from the ones the output records: {setting: (recorded, now)}."""

    def __init__(self, root: str, differ: dict[str, tuple[object, object]]) -> None:
        self.differ = differ
        detail = "; ".join(f"{k}: {there!r} there, {now!r} now" for k, (there, now) in differ.items())
        self.what = f"{root}: this output was written with other settings ({detail})"
        super().__init__(f"{self.what}; use the same settings or another output path")


@dataclass(frozen=True)
class ChunkCommit:
    """What one chunk generation adds: rows per data table, analytics partials, the chunk's
    failures after this generation (replacing earlier ones), and its summary."""

    chunk: Range
    generation: int
    tables: Mapping[str, pa.Table]
    failures: pa.Table  # FAILURES schema
    volume: pa.Table | None = None  # HOURLY_PARTIAL schema
    largest: pa.Table | None = None  # LARGEST_PARTIAL schema
    ledgers: int = 0
    events: int = 0
    new_failures: int = 0
    writer: str = "backfill"

    @property
    def app_id(self) -> str:
        return app_id(self.chunk)


def parse_as_of(text: str | None) -> int | dt.datetime | None:
    """A table version number, or an ISO 8601 time (UTC unless it says otherwise)."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"as of takes a version number or an ISO 8601 time, got {text!r}") from exc
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def app_id(chunk: Range) -> str:
    """The Delta application-transaction id of a chunk: the same in every table."""
    return f"obsrvr-ray/chunk/{range_key(chunk)}"


@dataclass(frozen=True)
class Shape:
    """What the rows of an output depend on. Every writer must match the recorded `shared` keys
    (what shapes the rows both a backfill and the live follower append); a writer of the kind
    that created the output (a backfill rerun) must match all of them."""

    settings: dict
    partition_by: tuple[str, ...] = ("date",)
    writer: str = "backfill"
    shared: tuple[str, ...] | None = None  # None: every key is shared

    def describe(self) -> str:
        return json.dumps({**self.settings, "writer": self.writer}, sort_keys=True)


@dataclass
class CommitOutcome:
    committed: dict[str, bool] = field(default_factory=dict)  # table -> whether this call committed it

    @property
    def committed_here(self) -> bool:
        return self.committed.get(CHUNKS_TABLE, False)


class TableSet:
    """Every table of one output location. Cheap to make; tables are loaded on first use and
    brought up to date incrementally (a reader polls the log's tail, not the whole log)."""

    def __init__(self, location: TableLocation, compression: str = "zstd") -> None:
        self.location = location
        self.compression = compression
        self._loaded: dict[str, DeltaTable] = {}

    @classmethod
    def at(cls, root: str, s3=None, compression: str = "zstd") -> TableSet:
        return cls(TableLocation(root, s3) if s3 is not None else TableLocation(root), compression)

    # -- tables -------------------------------------------------------------------------------
    def uri(self, name: str) -> str:
        return self.location.uri(name)

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(self.uri(name), storage_options=self.location.storage_options())

    def table(self, name: str, as_of: int | str | dt.datetime | None = None) -> DeltaTable | None:
        """The table's latest snapshot (or the one `as_of` a version or time); None if absent."""
        if as_of is None and name in self._loaded:
            loaded = self._loaded[name]
            try:
                loaded.update_incremental()
                return loaded
            except DeltaError:  # the table was replaced under this handle (deleted, recreated): load it anew
                del self._loaded[name]
        try:
            table = DeltaTable(self.uri(name), storage_options=self.location.storage_options())
        except TableNotFoundError:
            return None
        if as_of is None:
            self._loaded[name] = table
            return table
        try:
            table.load_as_version(as_of)
        except Exception as exc:  # delta-rs says why: no such version, a time before the first commit
            raise ConfigError(f"{self.uri(name)}: cannot read as of {as_of!r}: {exc}") from exc
        return table

    def ensure(self, shape: Shape, tables: tuple[str, ...]) -> None:
        """Create the tables this output needs (idempotent, safe when two writers race), and
        refuse settings other than the ones the output was first written with (see Shape)."""
        schemas = {**{t: TABLES[t] for t in tables}, **CONTROL_SCHEMAS}
        for name, schema in schemas.items():
            keys = partition_columns(name, shape.partition_by) if name in TABLES else ()
            stored = with_partition_columns(schema.empty_table(), name, shape.partition_by).schema
            description = shape.describe() if name == CHUNKS_TABLE else None
            try:
                DeltaTable.create(self.uri(name), stored, partition_by=list(keys) or None, mode="ignore",
                                  description=description, storage_options=self.location.storage_options())
            except Exception:
                if not self.exists(name):  # another writer created it meanwhile: fine; else a real error
                    raise
        existing = self.table(CHUNKS_TABLE)
        recorded = json.loads(existing.metadata().description or "{}") if existing is not None else {}
        wanted = json.loads(shape.describe())
        same_kind = recorded.get("writer", shape.writer) == shape.writer
        keys = set(recorded) | set(wanted) if same_kind or shape.shared is None else set(shape.shared)
        keys.discard("writer")
        differ = {k: (recorded.get(k), wanted.get(k)) for k in sorted(keys) if recorded.get(k) != wanted.get(k)}
        if differ:
            raise SettingsChanged(self.location.root, differ)

    def record_settings(self, shape: Shape) -> None:
        """Record `shape` as the output's settings, replacing the ones it was created with (the
        caller decides when that is sound: see chunks.output.reset_settings)."""
        table = self.table(CHUNKS_TABLE)
        if table is None:
            raise TableError(f"{self.uri(CHUNKS_TABLE)} is not a Delta table: the output was not created (ensure)")
        table.alter.set_table_description(shape.describe())

    def partitioned_by(self, name: str) -> tuple[str, ...]:
        table = self.table(name)
        return tuple(table.metadata().partition_columns) if table is not None else ()

    # -- commits ------------------------------------------------------------------------------
    def commit_chunk(self, commit: ChunkCommit, partition_by: tuple[str, ...]) -> CommitOutcome:
        """Commit every table of a chunk generation that its log does not hold yet."""
        outcome = CommitOutcome()
        key = commit.chunk
        for name in COMMIT_ORDER:
            if name in TABLES:
                if name not in commit.tables:
                    continue
                data = with_partition_columns(commit.tables[name], name, partition_by)
                outcome.committed[name] = self._commit(name, data, commit)
            elif name == VOLUME_PARTIALS and commit.volume is not None:
                outcome.committed[name] = self._commit(name, _volume_rows(commit.volume, key), commit)
            elif name == LARGEST_PARTIALS and commit.largest is not None:
                rows = _with_chunk(commit.largest, key).cast(LARGEST_ROWS)
                outcome.committed[name] = self._commit(name, rows, commit)
            elif name == FAILURES_TABLE:
                rows = _failure_rows(commit)
                outcome.committed[name] = self._commit(name, rows, commit,
                                                       replace=f"chunk_start = {key[0]}" if commit.generation else None)
            elif name == CHUNKS_TABLE:
                outcome.committed[name] = self._commit(name, _chunk_row(commit), commit)
        return outcome

    def _commit(self, name: str, data: pa.Table, commit: ChunkCommit, replace: str | None = None) -> bool:
        table = self.table(name)
        if table is None:
            raise TableError(f"{self.uri(name)} is not a Delta table: the output was not created (ensure)")
        if _holds(table, commit):
            return False
        props = CommitProperties(
            app_transactions=[Transaction(commit.app_id, commit.generation)],
            custom_metadata={"obsrvr.chunk": range_key(commit.chunk), "obsrvr.generation": str(commit.generation),
                             "obsrvr.writer": commit.writer},
        )
        try:
            write_deltalake(table, data, mode="overwrite" if replace else "append", predicate=replace,
                            writer_properties=self._writer_properties(), commit_properties=props)
        except CommitFailedError as exc:
            table.update_incremental()
            if _holds(table, commit):
                return False  # another attempt at the same chunk generation committed first
            raise TableError(f"{self.uri(name)}: chunk {range_key(commit.chunk)} generation {commit.generation} "
                             f"could not be committed: {exc}") from exc
        return True

    def _writer_properties(self) -> WriterProperties:
        codec = "UNCOMPRESSED" if self.compression == "none" else self.compression.upper()
        return WriterProperties(compression=codec)

    def replace_table(self, name: str, data: pa.Table) -> None:
        """Overwrite a derived table (the merged analytics) as one new version."""
        write_deltalake(self.uri(name), data, mode="overwrite", schema_mode="overwrite",
                        writer_properties=self._writer_properties(), storage_options=self.location.storage_options())

    # -- what is committed --------------------------------------------------------------------
    def dataset(self, name: str, as_of: int | str | dt.datetime | None = None) -> ds.FileSystemDataset | None:
        """The snapshot's files as a pyarrow dataset, partition values from the log (pyarrow fills
        the partition columns from them) and files read through pyarrow's own filesystem. Not
        delta-rs' `to_pyarrow_dataset`: its Python filesystem bridge can abort the process at
        exit (seen here with deltalake 1.6.6), and its per-file statistics expressions cost about
        0.5 ms a file to build."""
        table = self.table(name, as_of)
        if table is None:
            return None
        return self.snapshot_dataset(name, table, pa.table(table.get_add_actions(flatten=True)))

    def snapshot_dataset(self, name: str, table: DeltaTable, actions: pa.Table) -> ds.FileSystemDataset:
        """The dataset of a loaded snapshot's add actions (`get_add_actions(flatten=True)`), its
        fragments in the actions' order."""
        filesystem = self.location.arrow_filesystem(name)
        partitions = [c for c in actions.column_names if c.startswith("partition.")]
        fragments = [
            PARQUET.make_fragment(unquote(row["path"]), filesystem=filesystem,
                                  partition_expression=partition_expression(row, partitions),
                                  file_size=row["size_bytes"])
            for row in actions.select(["path", "size_bytes", *partitions]).to_pylist()
        ]
        return ds.FileSystemDataset(fragments, pa.schema(table.schema().to_arrow()), PARQUET, filesystem)

    def committed(self) -> dict[Range, int]:
        """Every committed chunk and its latest generation."""
        rows = self.read(CHUNKS_TABLE, columns=["chunk_start", "chunk_end", "generation"])
        if rows is None:
            return {}
        latest: dict[Range, int] = {}
        for start, end, generation in zip(*(rows[c].to_pylist() for c in rows.column_names), strict=True):
            latest[(start, end)] = max(generation, latest.get((start, end), 0))
        return latest

    def failures(self, as_of: int | str | dt.datetime | None = None) -> pa.Table:
        """The failures table (FAILURE_ROWS): each chunk's failures after its latest generation."""
        rows = self.read(FAILURES_TABLE, as_of)
        return FAILURE_ROWS.empty_table() if rows is None else rows.select(FAILURE_ROWS.names).cast(FAILURE_ROWS)

    def read(self, name: str, as_of: int | str | dt.datetime | None = None,
             columns: list[str] | None = None) -> pa.Table | None:
        data = self.dataset(name, as_of)
        return None if data is None else data.to_table(columns=columns)


PARQUET = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True))


def partition_expression(row: dict, columns: list[str]) -> ds.Expression:
    """A file's partition values (add actions' `partition.<column>`) as its fragment's expression."""
    out = ds.scalar(True)
    for name in columns:
        value, field = row[name], ds.field(name.removeprefix("partition."))
        out = out & (field.is_null() if value is None else field == value)
    return out


def _holds(table: DeltaTable, commit: ChunkCommit) -> bool:
    """Whether the table's log records this chunk generation (or a later one) as committed."""
    version = table.transaction_version(commit.app_id)
    return version is not None and version >= commit.generation


def _with_chunk(table: pa.Table, chunk: Range) -> pa.Table:
    return table.add_column(0, "chunk_start", pa.array([chunk[0]] * table.num_rows, pa.int64()))


def _volume_rows(partial: pa.Table, chunk: Range) -> pa.Table:
    text = partial.set_column(partial.schema.get_field_index("volume"), "volume_raw",
                              pc.cast(partial["volume"], pa.string()))
    return _with_chunk(text, chunk).cast(VOLUME_ROWS)


def _failure_rows(commit: ChunkCommit) -> pa.Table:
    n = commit.failures.num_rows
    key = {"chunk_start": [commit.chunk[0]] * n, "chunk_end": [commit.chunk[1]] * n,
           "generation": [commit.generation] * n}
    columns = {**{k: pa.array(v, pa.int64()) for k, v in key.items()},
               **{f.name: commit.failures[f.name] for f in FAILURES}}
    return pa.table(columns, schema=FAILURE_ROWS)


def _chunk_row(commit: ChunkCommit) -> pa.Table:
    rows = {name: table.num_rows for name, table in commit.tables.items()}
    return pa.Table.from_pylist([{
        "chunk_start": commit.chunk[0], "chunk_end": commit.chunk[1], "generation": commit.generation,
        "ledgers": commit.ledgers, "events": commit.events, "ledger_rows": rows.get("ledgers"),
        "transaction_rows": rows.get(TRANSACTIONS_TABLE), "transfer_rows": rows.get(TRANSFERS_TABLE),
        "failures": commit.failures.num_rows, "new_failures": commit.new_failures, "writer": commit.writer,
        "committed_at": dt.datetime.now(dt.UTC),
    }], schema=CHUNK_ROWS)
