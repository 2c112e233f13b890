"""Hive-style partitioning (`date=2026-06-19/event_type=transfer/`) of the tables we write.

Readers (pyarrow.dataset, DuckDB, Spark, Athena) turn the directory names back into columns
and skip directories a filter rules out, so a query for one day or one asset opens only its
files. A key that is also a column of the table (asset_code) is taken out of the files, as
every hive writer does, so the column is not there twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.schema import LEDGERS_TABLE, TRANSACTIONS_TABLE, TRANSFERS_TABLE

NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # what hive, pyarrow and DuckDB read back as null

# key -> (tables it applies to, how its value is derived from a row)
PARTITION_KEYS: dict[str, tuple[frozenset[str], str]] = {
    "date": (frozenset({LEDGERS_TABLE, TRANSACTIONS_TABLE, TRANSFERS_TABLE}), "closed_at as YYYY-MM-DD (UTC)"),
    "hour": (frozenset({LEDGERS_TABLE, TRANSACTIONS_TABLE, TRANSFERS_TABLE}), "closed_at's hour of day, 0-23 (UTC)"),
    "asset_code": (frozenset({TRANSFERS_TABLE}), "asset_code (null for XLM and custom tokens)"),
    "event_type": (frozenset({TRANSFERS_TABLE}), "event_topic (transfer, mint, burn, clawback, fee)"),
}


def check_keys(keys: tuple[str, ...]) -> None:
    unknown = [k for k in keys if k not in PARTITION_KEYS]
    if unknown:
        raise ConfigError(f"unknown partition keys {unknown}; known: {', '.join(PARTITION_KEYS)}")
    if len(set(keys)) != len(keys):
        raise ConfigError(f"partition keys repeat: {list(keys)}")


def keys_for(table_name: str, keys: tuple[str, ...]) -> tuple[str, ...]:
    """The keys that apply to a table, in the order given (date and hour only for ledgers and
    transactions, which have no asset or event type)."""
    return tuple(k for k in keys if table_name in PARTITION_KEYS[k][0])


# The column a Delta table is partitioned on for each key: derived ones (date, hour) are stored as
# columns of their own; asset_code and event_topic are the rows' own columns.
DELTA_COLUMNS = {"date": "date", "hour": "hour", "asset_code": "asset_code", "event_type": "event_topic"}


def partition_columns(table_name: str, keys: tuple[str, ...]) -> tuple[str, ...]:
    """The columns a Delta table of this kind is partitioned on."""
    return tuple(DELTA_COLUMNS[k] for k in keys_for(table_name, keys)) if table_name in _KINDS else ()


def with_partition_columns(table: pa.Table, table_name: str, keys: tuple[str, ...]) -> pa.Table:
    """The rows with the derived partition columns (date, hour) appended, as Delta stores them."""
    for key in keys_for(table_name, keys) if table_name in _KINDS else ():
        column = DELTA_COLUMNS[key]
        if column not in table.column_names:
            table = table.append_column(pa.field(column, pa.string()), _values(table, key))
    return table


_KINDS = frozenset().union(*(tables for tables, _ in PARTITION_KEYS.values()))


def _values(table: pa.Table, key: str) -> pa.Array:
    if key == "date":
        values = pc.strftime(table["closed_at"], format="%Y-%m-%d")
    elif key == "hour":
        values = pc.cast(pc.hour(table["closed_at"]), pa.string())
    elif key == "asset_code":
        values = table["asset_code"]
    else:
        values = table["event_topic"]
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def segment(key: str, value: str | None) -> str:
    """One directory level; characters outside [A-Za-z0-9._-] are percent-encoded, as readers decode them."""
    return f"{key}={NULL_PARTITION if value is None else quote(value, safe='._-')}"


def _segments(table: pa.Table, key: str) -> pa.Array:
    """`key=value` of every row, encoding each distinct value once."""
    encoded = pc.dictionary_encode(_values(table, key))
    names = pa.array([segment(key, v) for v in encoded.dictionary.to_pylist()] + [segment(key, None)])
    return names.take(pc.fill_null(encoded.indices, len(names) - 1))


@dataclass(frozen=True)
class Part:
    directory: str  # '' when unpartitioned, else 'k1=v1/k2=v2'
    table: pa.Table


def split(table: pa.Table, keys: tuple[str, ...], max_rows: int) -> list[Part]:
    """The table cut by partition directory (sorted by directory, rows in their original order)
    and again into files of at most `max_rows` rows."""
    if table.num_rows == 0:
        return []
    if not keys:
        return [Part("", table.slice(i, max_rows)) for i in range(0, table.num_rows, max_rows)]
    paths = _segments(table, keys[0])
    for key in keys[1:]:
        paths = pc.binary_join_element_wise(paths, _segments(table, key), "/")
    order = pc.sort_indices(
        pa.table({"path": paths, "row": pa.array(range(table.num_rows))}),
        sort_keys=[("path", "ascending"), ("row", "ascending")],
    )
    paths = paths.take(order)
    written = table.drop_columns([k for k in keys if k in table.column_names]).take(order)
    runs = pc.run_end_encode(paths)
    parts = []
    begin = 0
    for directory, end in zip(runs.values.to_pylist(), runs.run_ends.to_pylist(), strict=True):
        parts.extend(Part(directory, written.slice(i, min(max_rows, end - i))) for i in range(begin, end, max_rows))
        begin = end
    return parts
