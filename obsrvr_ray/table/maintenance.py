"""Keeping the tables fast and bounded, and auditing them: the operations behind
`obsrvr-ray table compact | retain | vacuum | history | restore | verify`, and the live app's
maintenance schedule. Named as Delta calls them.

- compact: rewrite each partition's small files into few large ones (OPTIMIZE), then write a
  checkpoint so a reader loads the log from one Parquet file instead of replaying JSON commits.
  Readers keep reading the snapshot they have; the old files stay until vacuum.
- retain: delete the rows older than an age (closed_at); whole partitions go without a rewrite.
- vacuum: remove files no version within the retention window refers to. Time travel and restore
  reach back only as far as the files they need are kept.
- restore: make an older version the latest one (a new commit): the backup/restore path.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, WriterProperties

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.schema import LEDGERS_TABLE, TABLES, TRANSACTIONS_TABLE, TRANSFERS_TABLE
from obsrvr_ray.table.tableset import CHUNKS_TABLE, COMMIT_ORDER, TableSet

# Columns that identify a row once: a table holding one of these twice has a duplicated chunk.
ROW_KEYS = {LEDGERS_TABLE: ("sequence",), TRANSACTIONS_TABLE: ("transaction_hash",),
            TRANSFERS_TABLE: ("ledger_sequence", "event_index")}
TIME_COLUMN = {LEDGERS_TABLE: "closed_at", TRANSACTIONS_TABLE: "closed_at", TRANSFERS_TABLE: "closed_at"}
ROW_GROUP_ROWS = 16_384  # rows per row group in compacted files: the unit a ledger-range read skips by
LEDGER_COLUMN = {LEDGERS_TABLE: "sequence", TRANSACTIONS_TABLE: "ledger_sequence", TRANSFERS_TABLE: "ledger_sequence"}
ROW_COUNTS = {LEDGERS_TABLE: "ledger_rows", TRANSACTIONS_TABLE: "transaction_rows", TRANSFERS_TABLE: "transfer_rows"}


@dataclass(frozen=True)
class Compaction:
    table: str
    files_removed: int
    files_added: int
    version: int


def existing(tables: TableSet, names: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The named tables, or every table of the output, that exist."""
    wanted = names or COMMIT_ORDER
    return tuple(n for n in wanted if tables.table(n) is not None)


def compact(tables: TableSet, names: tuple[str, ...] = ()) -> list[Compaction]:
    out = []
    for name in existing(tables, names):
        table = tables.table(name)
        if name in LEDGER_COLUMN:
            removed, added = _compact_in_ledger_order(table, LEDGER_COLUMN[name])
        else:
            metrics = table.optimize.compact()
            removed, added = int(metrics["numFilesRemoved"]), int(metrics["numFilesAdded"])
        table.create_checkpoint()
        out.append(Compaction(name, removed, added, table.version()))
    return out


def _compact_in_ledger_order(table: DeltaTable, column: str) -> tuple[int, int]:
    """Rewrite each partition that holds more than one file into files sorted by ledger, in row
    groups of ROW_GROUP_ROWS: the REST pages read ledger ranges, and row groups' statistics then
    let a reader take a few of them instead of a whole day (z-order on one column is a sort)."""
    actions = pa.table(table.get_add_actions(flatten=True))
    keys = [c for c in actions.column_names if c.startswith("partition.")]
    counts = actions.group_by(keys).aggregate([([], "count_all")]) if keys else None
    if counts is None:
        targets = [None] if actions.num_rows > 1 else []
    else:
        targets = [row for row in counts.to_pylist() if row["count_all"] > 1]
    removed = added = 0
    properties = WriterProperties(compression="ZSTD", max_row_group_size=ROW_GROUP_ROWS)
    for row in targets:
        filters = None if row is None else [(k.removeprefix("partition."), "=", row[k]) for k in keys
                                            if row[k] is not None] or None
        metrics = table.optimize.z_order([column], partition_filters=filters, writer_properties=properties)
        removed += int(metrics["numFilesRemoved"])
        added += int(metrics["numFilesAdded"])
    return removed, added


def parse_age(text: str) -> dt.timedelta:
    """'90d', '12h', '30m' or a number of days."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    try:
        if text[-1:] in units:
            return dt.timedelta(**{units[text[-1]]: float(text[:-1])})
        return dt.timedelta(days=float(text))
    except ValueError as exc:
        raise ConfigError(f"an age is a number with d, h or m (90d, 12h), got {text!r}") from exc


def retain(tables: TableSet, name: str, older_than: dt.timedelta, now: dt.datetime | None = None) -> int:
    """Delete the rows closed before now - older_than; the number of rows deleted."""
    if name not in TIME_COLUMN:
        raise ConfigError(f"retention applies to {', '.join(TIME_COLUMN)}, not {name!r}")
    table = tables.table(name)
    if table is None:
        return 0
    cutoff = (now or dt.datetime.now(dt.UTC)) - older_than
    predicate = f"{TIME_COLUMN[name]} < '{cutoff.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'"
    if "date" in table.metadata().partition_columns:  # lets delta-rs drop whole partitions first
        predicate = f"date <= '{cutoff.strftime('%Y-%m-%d')}' AND {predicate}"
    return int(table.delete(predicate).get("num_deleted_rows", 0))


def vacuum(tables: TableSet, names: tuple[str, ...] = (), retention_hours: float = 168.0,
           dry_run: bool = False) -> dict[str, list[str]]:
    """Files removed (or, dry run, that would be) per table. Below the 7-day default, older
    versions may lose their files: time travel to them then fails."""
    out = {}
    for name in existing(tables, names):
        out[name] = tables.table(name).vacuum(retention_hours=int(retention_hours), dry_run=dry_run,
                                              enforce_retention_duration=False)
    return out


def history(tables: TableSet, name: str, limit: int | None = None) -> list[dict]:
    table = tables.table(name)
    if table is None:
        raise ConfigError(f"{tables.uri(name)} is not a Delta table")
    return table.history(limit)


def restore(tables: TableSet, name: str, target: int | dt.datetime) -> dict:
    table = tables.table(name)
    if table is None:
        raise ConfigError(f"{tables.uri(name)} is not a Delta table")
    try:
        return table.restore(target)
    except Exception as exc:  # delta-rs names the missing version or file
        raise ConfigError(f"{tables.uri(name)}: cannot restore {target!r}: {exc}") from exc


def _deleted_from(table) -> bool:
    """Retention (or a user) deleted rows: the chunks table no longer accounts for the count."""
    return any(entry.get("operation") == "DELETE" for entry in table.history())


def _within(ledgers: pa.ChunkedArray, chunks: pa.Table) -> int:
    """How many of the rows' ledgers fall in the committed chunks' ranges (chunks do not overlap)."""
    if chunks.num_rows == 0 or len(ledgers) == 0:
        return 0
    starts = np.asarray(chunks["chunk_start"].to_numpy())
    order = np.argsort(starts)
    starts, ends = starts[order], np.asarray(chunks["chunk_end"].to_numpy())[order]
    values = np.asarray(ledgers.to_numpy())
    at = np.searchsorted(starts, values, side="right") - 1
    inside = (at >= 0) & (values <= ends[np.clip(at, 0, None)])
    return int(inside.sum())


def verify(tables: TableSet, names: tuple[str, ...]) -> list[str]:
    """Problems, if any: a row key present twice (a chunk committed twice), a table whose rows
    in committed chunks disagree with what those chunks committed, a snapshot file that cannot be
    read. Rows of a chunk whose commit is under way (or was cut short, for the next run to finish)
    are not counted. Reads every row: for audits, not every run."""
    problems = []
    chunks = tables.read(CHUNKS_TABLE)  # read first: a chunk listed here has every table committed
    for name in names:
        table = tables.table(name)
        if table is None:
            problems.append(f"{tables.uri(name)}: missing")
            continue
        try:
            rows = tables.read(name, columns=list(dict.fromkeys([*ROW_KEYS[name], LEDGER_COLUMN[name]])))
        except Exception as exc:  # a file the log names is gone or unreadable
            problems.append(f"{tables.uri(name)}: unreadable: {exc}")
            continue
        keys = ROW_KEYS[name]
        counted = rows.group_by(list(keys)).aggregate([([], "count_all")])
        twice = counted.filter(pc.greater(counted["count_all"], 1))
        if twice.num_rows:
            problems.append(f"{tables.uri(name)}: {twice.num_rows} keys ({', '.join(keys)}) appear more than once, "
                            f"e.g. {twice.slice(0, 1).to_pylist()[0]}")
        if chunks is not None and name in TABLES and not _deleted_from(table):
            expected = pc.sum(chunks[ROW_COUNTS[name]]).as_py() or 0
            found = _within(rows[LEDGER_COLUMN[name]], chunks)
            if expected != found:
                problems.append(f"{tables.uri(name)}: {found} rows in committed chunks, the chunks table accounts "
                                f"for {expected}")
    return problems


@dataclass(frozen=True)
class MaintenancePolicy:
    """The live app's schedule: compact every `compact_every` seconds, then apply each table's
    retention (table -> age, e.g. {"token_transfers": "365d"}) and vacuum files older versions no
    longer need after `vacuum_retention_hours`."""

    compact_every: float = 600.0
    retention: tuple[tuple[str, str], ...] = ()
    vacuum_retention_hours: float = 168.0

    def __post_init__(self) -> None:
        for name, age in self.retention:
            if name not in TIME_COLUMN:
                raise ConfigError(f"maintenance.retention: {name!r} is not one of {', '.join(TIME_COLUMN)}")
            parse_age(age)
        if self.compact_every <= 0 or self.vacuum_retention_hours < 0:
            raise ConfigError("maintenance: compact_every must be > 0 and vacuum_retention_hours >= 0")


@dataclass
class MaintenanceStatus:
    runs: int = 0
    last_run: str | None = None  # ISO time of the last completed run
    last_error: str | None = None
    files_compacted: int = 0
    rows_retired: int = 0
    files_vacuumed: int = 0
    versions: dict[str, int] | None = None  # table -> latest version after the last run


def maintain(tables: TableSet, policy: MaintenancePolicy, status: MaintenanceStatus) -> None:
    """One scheduled run: compact, retain, vacuum. Readers keep their snapshots throughout and
    writers keep appending (an append never conflicts with a compaction of other files)."""
    compacted = compact(tables)
    retired = sum(retain(tables, name, parse_age(age)) for name, age in policy.retention)
    vacuumed = vacuum(tables, retention_hours=policy.vacuum_retention_hours)
    status.runs += 1
    status.last_run = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    status.last_error = None
    status.files_compacted += sum(c.files_removed for c in compacted)
    status.rows_retired += retired
    status.files_vacuumed += sum(len(files) for files in vacuumed.values())
    status.versions = {name: tables.table(name).version() for name in existing(tables)}
