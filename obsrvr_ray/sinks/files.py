"""Write Arrow tables as Parquet, JSON lines or CSV, whole or not at all, locally or to S3."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.objectstore import S3Options, atomic_write_bytes, open_store

FORMATS = ("parquet", "jsonl", "csv")
PARQUET_COMPRESSIONS = ("snappy", "gzip", "lz4", "zstd", "brotli", "none")
EXTENSIONS = {"parquet": ".parquet", "jsonl": ".jsonl", "csv": ".csv"}


def _json_default(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def jsonl_bytes(table: pa.Table) -> bytes:
    """One compact JSON object per row; times as RFC 3339 UTC like stellar-etl writes them."""
    lines = [
        json.dumps(row, separators=(",", ":"), ensure_ascii=False, default=_json_default)
        for row in table.to_pylist()
    ]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def csv_bytes(table: pa.Table) -> bytes:
    """CSV cannot hold lists: list columns are written as JSON arrays in a text cell."""
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_list(field.type):
            columns.append(pa.array([None if v is None else json.dumps(v) for v in column.to_pylist()], pa.string()))
        else:
            columns.append(column)
    flat = pa.Table.from_arrays(columns, names=table.column_names)
    buf = io.BytesIO()
    pacsv.write_csv(flat, buf)
    return buf.getvalue()


def parquet_bytes(table: pa.Table, compression: str = "zstd") -> bytes:
    if compression not in PARQUET_COMPRESSIONS:
        raise ConfigError(f"compression must be one of {', '.join(PARQUET_COMPRESSIONS)}, got {compression!r}")
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=None if compression == "none" else compression)
    return buf.getvalue()


def encode_table(table: pa.Table, fmt: str, compression: str = "zstd") -> bytes:
    if fmt == "parquet":
        return parquet_bytes(table, compression)
    if fmt == "jsonl":
        return jsonl_bytes(table)
    if fmt == "csv":
        return csv_bytes(table)
    raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")


@dataclass(frozen=True)
class Written:
    path: str
    rows: int
    bytes: int


def write_table(
    table: pa.Table, dest: str, fmt: str, *, compression: str = "zstd", s3: S3Options | None = None
) -> Written:
    """Encode in memory, then publish in one step (rename or single PUT): readers never see
    a partial file."""
    data = encode_table(table, fmt, compression)
    if dest.startswith("s3://"):
        bucket_and_key = dest.removeprefix("s3://")
        bucket, _, key = bucket_and_key.partition("/")
        open_store(f"s3://{bucket}", s3).put(key, data)
    else:
        path = Path(dest)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    return Written(dest, table.num_rows, len(data))
