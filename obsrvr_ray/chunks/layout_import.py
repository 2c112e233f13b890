"""`obsrvr-ray table import`: bring an output of the earlier layout (Parquet files and a
`_backfill` manifest) into the Delta tables, chunk generation by chunk generation.

The earlier layout, as its backfill wrote it:

  _backfill/job.json                                      the settings the files depend on
  _backfill/manifest/<chunk>.g<gen>.json                  one commit per chunk generation: its
                                                          files (path, table, rows, bytes, sha256)
                                                          and details (ledgers, events, rows,
                                                          failures, new_failures)
  <format>/<table>/<k=v>/.../part-<chunk>-g<gen>-<n>.<ext>  the rows; `asset_code` lives only in
                                                          its directory name (percent-encoded,
                                                          __HIVE_DEFAULT_PARTITION__ = null)
  <format>/failures/part-<chunk>.<ext>                    the chunk's latest failures (the manifest
                                                          details hold every generation's)
  _backfill/partials/{hourly,largest}/part-<chunk>-g<gen>.parquet   the analytics partials
  _backfill/staging/<chunk>.g<gen>/<attempt>/<path>       files of a commit a crash left unpublished

A manifest entry is the truth: each of its files is read from where it was published or, if a
crash cut publishing short, from its attempt's staging place, and checked against the entry's
size and checksum. Staged attempts without an entry were never committed and are ignored.

Each chunk generation becomes one `ChunkCommit` (writer "import"), committed in generation order
with `TableSet.commit_chunk`: the same exactly-once commits a backfill makes, so importing twice,
or again after a crash, commits only what the tables do not hold yet. The source is only read.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from obsrvr_ray.analytics.transfers import HOURLY_PARTIAL, LARGEST_PARTIAL, merge
from obsrvr_ray.chunks.output import merged_analytics
from obsrvr_ray.errors import ConfigError, ObsrvrError
from obsrvr_ray.logs import log_event
from obsrvr_ray.objectstore import ObjectNotFound, ObjectStore, S3Options, open_store
from obsrvr_ray.ranges import Range, parse_range_key, range_key
from obsrvr_ray.schema import FAILURES, TABLES, TRANSFERS_TABLE
from obsrvr_ray.sinks.layout import OutputSpec, write_analytics_exports, write_exports
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.partitioning import NULL_PARTITION
from obsrvr_ray.table.tableset import ANALYTICS, ChunkCommit, Shape, TableSet

log = logging.getLogger(__name__)

CONTROL = "_backfill"
SETTINGS = f"{CONTROL}/job.json"
MANIFEST = f"{CONTROL}/manifest/"
STAGING = f"{CONTROL}/staging/"
_MANIFEST_KEY = re.compile(r"^_backfill/manifest/(\d{10}-\d{10})\.g(\d+)\.json$")
EARLIER_LAYOUT, TABLE_LAYOUT = 1, 2
WRITER = "import"
# The data tables' files are read in one format: Parquet when the output has it (exact types).
FORMAT_PREFERENCE = ("parquet", "jsonl", "csv")
PARTIALS = {"hourly": HOURLY_PARTIAL, "largest": LARGEST_PARTIAL}  # manifest table name -> schema
_READERS = 16  # files fetched at once (an S3 source is latency-bound)


class LayoutError(ObsrvrError):
    """The earlier output contradicts its manifest: a committed file is missing or altered, a
    generation is missing, a file holds other rows than its entry says."""


@dataclass
class ImportReport:
    chunks: int = 0  # chunk generations this import committed
    skipped: int = 0  # chunk generations the tables already held
    rows: dict[str, int] = field(default_factory=dict)  # rows committed per data table by this import
    analytics: dict[str, int] = field(default_factory=dict)  # rows of each merged analytics table, if rebuilt
    exports: dict[str, int] = field(default_factory=dict)  # plain-file exports written, per table


def _chunk_key(value: object) -> Range:
    if not isinstance(value, str):
        raise ValueError(f"expected a chunk key (first-last), got {value!r}")  # pydantic names the key
    return parse_range_key(value)


class _File(BaseModel):
    """A file of a manifest entry: where the earlier backfill published it, and what it held."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str
    table: str
    rows: int
    bytes: int
    sha256: str


class _Entry(BaseModel):
    """One manifest entry of the earlier layout (its `Commit`). A model, not a plain record: the
    entry is input, and a value of the wrong type is refused here, naming its key, instead of
    surfacing later as a file that seems to differ from its entry."""

    model_config = ConfigDict(frozen=True)
    chunk: Annotated[Range, BeforeValidator(_chunk_key)]
    generation: int
    attempt: str
    files: tuple[_File, ...]
    details: Annotated[dict, BeforeValidator(lambda value: value or {})] = {}

    @classmethod
    def parse(cls, data: bytes, where: str) -> _Entry:
        try:
            return cls.model_validate_json(data)
        except PydanticValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}"
                                 for e in exc.errors(include_url=False))
            raise LayoutError(f"{where}: not a manifest entry of the earlier layout: {problems}") from None

    def staged(self, path: str) -> str:
        return f"{STAGING}{range_key(self.chunk)}.g{self.generation}/{self.attempt}/{path}"


def import_layout(source: str, out: str, s3: S3Options | None = None) -> ImportReport:
    """Commit every chunk generation of the earlier output at `source` to the Delta tables at
    `out` (which may be the same location), then rebuild the merged analytics tables and write
    the plain-file exports the settings ask for."""
    s3 = s3 or S3Options()
    store = open_store(source, s3)
    settings = read_settings(store)
    names = tuple(settings.get("tables") or ())
    partition_by = tuple(settings.get("partition_by") or ())
    fmt = _data_format(settings)
    tables = TableSet(TableLocation(out, s3), settings.get("compression") or "zstd")
    tables.ensure(Shape({**settings, "layout": TABLE_LAYOUT}, partition_by), names)
    exports = _export_spec(settings, source, out, s3)
    out_store = open_store(out, s3) if exports is not None else None

    report = ImportReport()
    entries = manifest(store)
    committed = tables.committed()
    _check_chunks(entries, committed, out)
    for chunk, generations in sorted(entries.items()):
        for generation in generations:
            if committed.get(chunk, -1) >= generation:
                report.skipped += 1
                continue
            entry = _read_entry(store, chunk, generation)
            commit = chunk_commit(store, entry, settings, fmt)
            outcome = tables.commit_chunk(commit, partition_by)
            if not outcome.committed_here:  # another writer committed it meanwhile
                report.skipped += 1
                continue
            report.chunks += 1
            for name, table in commit.tables.items():
                if outcome.committed.get(name):
                    report.rows[name] = report.rows.get(name, 0) + table.num_rows
            if exports is not None:
                for name, n in write_exports(out_store, commit, exports).items():
                    report.exports[name] = report.exports.get(name, 0) + n
            log_event(log, "chunk_imported", chunk=range_key(chunk), generation=generation,
                      rows={t: v.num_rows for t, v in commit.tables.items()}, failures=commit.failures.num_rows)
    if settings.get("analytics") and TRANSFERS_TABLE in names:
        report.analytics = _rebuild_analytics(tables, settings, report.chunks > 0, out_store, exports)
    return report


def read_settings(store: ObjectStore) -> dict:
    """The earlier output's settings (`_backfill/job.json`)."""
    try:
        data = store.get(SETTINGS)
    except ObjectNotFound:
        raise ConfigError(f"{store.describe(SETTINGS)} not found: {store.url} is not an output of the earlier "
                          "layout (Parquet files and a _backfill manifest)") from None
    try:
        settings = json.loads(data)
    except ValueError as exc:
        raise ConfigError(f"{store.describe(SETTINGS)}: not JSON: {exc}") from exc
    if not isinstance(settings, dict) or settings.get("layout") != EARLIER_LAYOUT:
        layout = settings.get("layout") if isinstance(settings, dict) else None
        raise ConfigError(f"{store.describe(SETTINGS)}: layout {layout!r}, not the earlier layout "
                          f"({EARLIER_LAYOUT}): nothing to import")
    unknown = [t for t in settings.get("tables") or () if t not in TABLES]
    if unknown:
        raise ConfigError(f"{store.describe(SETTINGS)}: unknown tables {unknown}")
    return settings


def manifest(store: ObjectStore) -> dict[Range, list[int]]:
    """Every committed chunk and its generations (0..latest, in order), from the key names."""
    found: dict[Range, list[int]] = {}
    for key in store.list(MANIFEST):
        match = _MANIFEST_KEY.match(key)
        if match:
            found.setdefault(parse_range_key(match.group(1)), []).append(int(match.group(2)))
    for chunk, generations in found.items():
        generations.sort()
        if generations != list(range(len(generations))):
            missing = sorted(set(range(generations[-1] + 1)) - set(generations))
            raise LayoutError(f"{store.describe(MANIFEST)}: chunk {range_key(chunk)} has generations {generations}, "
                              f"{missing} missing: a generation commits only after the one before it")
    return found


def _check_chunks(entries: dict[Range, list[int]], committed: dict[Range, int], out: str) -> None:
    """The tables may hold the same chunks (an earlier import) but no other chunk of their ledgers:
    rows would be there twice."""
    held = sorted(committed)
    starts = [c[0] for c in held]
    for chunk in sorted(entries):
        last = bisect.bisect_right(starts, chunk[1]) - 1  # the last held chunk starting within or before it
        for other in held[max(last - 1, 0):last + 1]:
            if other != chunk and other[0] <= chunk[1] and chunk[0] <= other[1]:
                raise ConfigError(f"{out}: the tables hold chunk {range_key(other)}, which overlaps chunk "
                                  f"{range_key(chunk)} of the earlier output: importing would repeat its ledgers")


def _read_entry(store: ObjectStore, chunk: Range, generation: int) -> _Entry:
    key = f"{MANIFEST}{range_key(chunk)}.g{generation}.json"
    entry = _Entry.parse(store.get(key), store.describe(key))
    if (entry.chunk, entry.generation) != (chunk, generation):
        raise LayoutError(f"{store.describe(key)}: holds chunk {range_key(entry.chunk)} generation {entry.generation}")
    return entry


def _data_format(settings: dict) -> str:
    formats = settings.get("formats") or ["parquet"]
    for fmt in FORMAT_PREFERENCE:
        if fmt in formats:
            return fmt
    raise ConfigError(f"{SETTINGS}: formats {formats}: none the importer reads ({', '.join(FORMAT_PREFERENCE)})")


def chunk_commit(store: ObjectStore, entry: _Entry, settings: dict, fmt: str) -> ChunkCommit:
    """One chunk generation of the earlier output as a commit to the tables."""
    names = tuple(settings.get("tables") or ())
    wanted = [f for f in entry.files
              if (f.table in names and f.path.startswith(f"{fmt}/{f.table}/")) or f.table in PARTIALS]
    contents = dict(zip((f.path for f in wanted), _fetch(store, entry, wanted), strict=True))
    tables = {}
    for name in names:
        parts = [_data_table(contents[f.path], f, fmt, name, store) for f in wanted if f.table == name]
        table = pa.concat_tables(parts) if parts else TABLES[name].empty_table()
        expected = (entry.details.get("rows") or {}).get(name)
        if expected is not None and expected != table.num_rows:
            raise LayoutError(f"chunk {range_key(entry.chunk)} generation {entry.generation}: {table.num_rows} "
                              f"{name} rows in its {fmt} files, its manifest entry says {expected}")
        tables[name] = table
    partials: dict[str, pa.Table | None] = {"hourly": None, "largest": None}
    if settings.get("analytics") and TRANSFERS_TABLE in names:
        for kind, schema in PARTIALS.items():
            parts = [_read_parquet(contents[f.path], f, store).select(schema.names).cast(schema)
                     for f in wanted if f.table == kind]
            partials[kind] = pa.concat_tables(parts) if parts else schema.empty_table()
    details = entry.details
    return ChunkCommit(
        entry.chunk, entry.generation, tables, failures_table(details.get("failures") or []),
        volume=partials["hourly"], largest=partials["largest"], ledgers=int(details.get("ledgers") or 0),
        events=int(details.get("events") or 0), new_failures=int(details.get("new_failures") or 0), writer=WRITER,
    )


def failures_table(failures: list[dict]) -> pa.Table:
    """The manifest's failures (Failure: sequence, origin, stage, error) in the FAILURES schema."""
    rows = [{"sequence": f.get("sequence"), "object_key": f.get("origin", f.get("object_key")),
             "stage": f.get("stage"), "error": f.get("error")} for f in failures]
    return pa.Table.from_pylist(rows, schema=FAILURES)


def _fetch(store: ObjectStore, entry: _Entry, files: list[_File]) -> Iterator[bytes]:
    def get(f: _File) -> bytes:
        try:
            data = store.get(f.path)
        except ObjectNotFound:
            try:  # committed, but a crash cut publishing short: the entry's attempt still holds it
                data = store.get(entry.staged(f.path))
            except ObjectNotFound:
                raise LayoutError(f"chunk {range_key(entry.chunk)} generation {entry.generation} is committed but "
                                  f"{store.describe(f.path)} is neither published nor staged") from None
        if len(data) != f.bytes or hashlib.sha256(data).hexdigest() != f.sha256:
            raise LayoutError(f"{store.describe(f.path)}: content differs from its manifest entry ({len(data)} bytes, "
                              f"{f.bytes} in it)")
        return data

    if len(files) <= 1:
        return map(get, files)
    with ThreadPoolExecutor(max_workers=min(_READERS, len(files))) as pool:
        return iter(list(pool.map(get, files)))


def hive_values(path: str) -> dict[str, str | None]:
    """The `key=value` directories of a data file's path (`<format>/<table>/k=v/.../part-...`),
    values decoded as readers decode them."""
    out: dict[str, str | None] = {}
    for part in path.split("/")[2:-1]:
        key, sep, value = part.partition("=")
        if sep:
            out[key] = None if value == NULL_PARTITION else unquote(value)
    return out


def _data_table(data: bytes, record: _File, fmt: str, name: str, store: ObjectStore) -> pa.Table:
    schema = TABLES[name]
    directories = hive_values(record.path)
    if fmt == "parquet":
        table = _read_parquet(data, record, store)
    elif fmt == "jsonl":
        table = _read_jsonl(data, schema, record, store)
    else:
        table = _read_csv(data, schema, record, store)
    if "asset_code" in directories and "asset_code" in schema.names:  # taken out of the file into its directory
        column = pa.array([directories["asset_code"]] * table.num_rows, pa.string())
        if "asset_code" in table.column_names:
            table = table.set_column(table.column_names.index("asset_code"), "asset_code", column)
        else:
            table = table.append_column("asset_code", column)
    missing = [c for c in schema.names if c not in table.column_names]
    if missing:
        raise LayoutError(f"{store.describe(record.path)}: columns {missing} of {name} missing")
    if table.num_rows != record.rows:
        raise LayoutError(f"{store.describe(record.path)}: {table.num_rows} rows, its manifest entry says "
                          f"{record.rows}")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise LayoutError(f"{store.describe(record.path)}: not in the {name} schema: {exc}") from exc


def _read_parquet(data: bytes, record: _File, store: ObjectStore) -> pa.Table:
    try:
        return pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise LayoutError(f"{store.describe(record.path)}: unreadable Parquet: {exc}") from exc


def _read_jsonl(data: bytes, schema: pa.Schema, record: _File, store: ObjectStore) -> pa.Table:
    if not data.strip():
        return schema.empty_table()
    try:
        return pajson.read_json(io.BytesIO(data), parse_options=pajson.ParseOptions(explicit_schema=schema))
    except pa.ArrowException as exc:
        raise LayoutError(f"{store.describe(record.path)}: unreadable JSON lines: {exc}") from exc


def _read_csv(data: bytes, schema: pa.Schema, record: _File, store: ObjectStore) -> pa.Table:
    """CSV cells hold list columns as JSON arrays (sinks/files.py csv_bytes)."""
    lists = [f.name for f in schema if pa.types.is_list(f.type)]
    types = {f.name: (pa.string() if f.name in lists else f.type) for f in schema}
    try:
        table = pacsv.read_csv(io.BytesIO(data), convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False))
        for name in lists:
            if name in table.column_names:
                values = [None if v is None else json.loads(v) for v in table[name].to_pylist()]
                table = table.set_column(table.column_names.index(name), name,
                                         pa.array(values, schema.field(name).type))
    except (pa.ArrowException, ValueError) as exc:
        raise LayoutError(f"{store.describe(record.path)}: unreadable CSV: {exc}") from exc
    return table


def _export_spec(settings: dict, source: str, out: str, s3: S3Options) -> OutputSpec | None:
    """What the imported chunks' plain-file exports need, when the settings ask for any (formats
    other than Parquet) and the output is not the source itself (which has them already)."""
    spec = OutputSpec(out, tuple(settings.get("formats") or ("parquet",)), settings.get("compression") or "zstd",
                      tuple(settings.get("partition_by") or ()), int(settings.get("max_rows_per_file") or 1_000_000),
                      s3)
    if not spec.exports or _same_location(source, out):
        return None
    return spec


def _same_location(a: str, b: str) -> bool:
    if a.startswith("s3://") or b.startswith("s3://"):
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).resolve() == Path(b).resolve()


def _rebuild_analytics(tables: TableSet, settings: dict, imported: bool, out_store: ObjectStore | None,
                       exports: OutputSpec | None) -> dict[str, int]:
    """The merged analytics tables over every committed chunk, as a backfill run ends with them;
    rewritten only when this import committed chunks or they are missing."""
    if not imported and all(tables.exists(f"{ANALYTICS}/{name}")
                            for name in merge(HOURLY_PARTIAL.empty_table(), LARGEST_PARTIAL.empty_table(), 1)):
        return {}
    merged = merged_analytics(tables, int(settings.get("top_transfers") or 10))
    for name, table in merged.items():
        tables.replace_table(f"{ANALYTICS}/{name}", table)
    if exports is not None:
        write_analytics_exports(out_store, merged, exports)
    return {name: table.num_rows for name, table in merged.items()}
