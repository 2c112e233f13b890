"""`obsrvr-ray table ...`: look after an output's Delta tables, read them as of a version or a
time, and bring in an output of the earlier Parquet-and-manifest layout."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Annotated

from pydantic import Field

from obsrvr_ray import exit_codes
from obsrvr_ray.cli.common import add_command
from obsrvr_ray.errors import ConfigError
from obsrvr_ray.objectstore import S3Options
from obsrvr_ray.schema import LEDGERS_TABLE, TABLES, TRANSACTIONS_TABLE, TRANSFERS_TABLE
from obsrvr_ray.settings_model import (
    Flag,
    Settings,
    Text,
    checked_text,
    one_of,
    setting,
    translated,
    whole,
    words,
)
from obsrvr_ray.sinks.files import FORMATS

EXPORTED = ("ledgers", "transactions", "token-transfers")
TIME_HELP = "a version number or an ISO 8601 time"


def parse_as_of(text: str | None):
    """--as-of, read by the table module (imported here, on use: delta-rs loads only for table commands)."""
    from obsrvr_ray.table.tableset import parse_as_of as parse

    return parse(text)


def _age(text: str) -> dt.timedelta:
    from obsrvr_ray.table.maintenance import parse_age

    return parse_age(text)


def _table_names(raw: object) -> tuple[str, ...]:
    from obsrvr_ray.table.tableset import COMMIT_ORDER

    names = words(raw)
    unknown = [n for n in names if n not in COMMIT_ORDER]
    if unknown:
        raise ConfigError(f"{', '.join(map(repr, unknown))} not among {', '.join(COMMIT_ORDER)}")
    return names


class TableFlags(Settings):
    """The flags of every `table` verb: where the output is."""

    out: Text = setting(..., "--out", "the output: a directory or s3://bucket/prefix")
    s3_endpoint_url: Text | None = setting(None, "--s3-endpoint-url", "endpoint of an S3-compatible store")
    s3_region: Text | None = setting(None, "--s3-region", "S3 region")


class TablesFlags(TableFlags):
    """A verb over some of the output's tables."""

    table: Annotated[tuple[str, ...], translated(_table_names)] = setting(
        (), "--table", "a table (repeatable or comma-separated); default: all", "many")


class HistorySettings(TablesFlags):
    limit: Annotated[int, whole(1)] = setting(20, "--limit", "commits to show per table")


class RetainSettings(TablesFlags):
    older_than: Annotated[str, checked_text(_age)] = setting(..., "--older-than", "an age: 90d, 12h, 30m")


class VacuumSettings(TablesFlags):
    retention_hours: Annotated[float, Field(ge=0)] = setting(
        168.0, "--retention-hours", "keep files older versions need for this long (default 168: time travel "
        "reaches a week)")
    dry_run: Flag = setting(False, "--dry-run", "say which files would be removed, remove none", "on")


class RestoreSettings(TablesFlags):
    to: Annotated[str, checked_text(parse_as_of)] = setting(..., "--to", TIME_HELP)


class TableExportSettings(TableFlags):
    name: Annotated[str, one_of(EXPORTED)] = setting(..., "name", f"the table: {', '.join(EXPORTED)}", "positional")
    to: Text = setting(..., "--to", "the file to write, local or s3://")
    format: Annotated[str, one_of(FORMATS)] = setting("parquet", "--format", f"file format: {', '.join(FORMATS)}")
    as_of: Annotated[str | None, checked_text(parse_as_of)] = setting(None, "--as-of",
                                                                      f"{TIME_HELP} (default: the latest)")


class SqlSettings(TableFlags):
    query: Text = setting(..., "query", "SQL, e.g. SELECT event_topic, count(*) FROM token_transfers GROUP BY 1",
                          "positional")
    as_of: Annotated[str | None, checked_text(parse_as_of)] = setting(None, "--as-of",
                                                                      f"{TIME_HELP} (default: the latest)")
    max_rows: Annotated[int, whole(1)] = setting(40, "--max-rows", "rows to show")


class ImportSettings(TableFlags):
    source: Text = setting(..., "source", "the earlier output's root: a directory or s3://bucket/prefix",
                           "positional")


def _tables(args: TableFlags):
    from obsrvr_ray.table.location import TableLocation
    from obsrvr_ray.table.tableset import TableSet

    return TableSet(TableLocation(args.out, S3Options(endpoint_url=args.s3_endpoint_url, region=args.s3_region)))


def _names(args: TablesFlags) -> tuple[str, ...]:
    return args.table


def cmd_history(args: HistorySettings) -> int:
    from obsrvr_ray.table.maintenance import existing, history

    tables = _tables(args)
    for name in existing(tables, _names(args)):
        print(f"== {name} (version {tables.table(name).version()}) ==")
        for entry in history(tables, name, args.limit):
            when = dt.datetime.fromtimestamp(entry["timestamp"] / 1000, dt.UTC).isoformat(timespec="seconds")
            params = entry.get("operationParameters", {})
            chunk = entry.get("obsrvr.chunk")
            detail = f"chunk {chunk} g{entry.get('obsrvr.generation')} ({entry.get('obsrvr.writer')})" if chunk else \
                json.dumps(params, sort_keys=True)
            print(f"  v{entry['version']:<6} {when}  {entry['operation']:<12} {detail}")
    return exit_codes.OK


def cmd_compact(args: TablesFlags) -> int:
    from obsrvr_ray.table.maintenance import compact

    for done in compact(_tables(args), _names(args)):
        print(f"{done.table}: {done.files_removed} files rewritten into {done.files_added}, now version {done.version}")
    return exit_codes.OK


def cmd_retain(args: RetainSettings) -> int:
    from obsrvr_ray.table.maintenance import parse_age, retain

    tables = _tables(args)
    for name in _names(args) or tuple(TABLES):
        if tables.table(name) is not None:
            print(f"{name}: {retain(tables, name, parse_age(args.older_than)):,} rows older than {args.older_than} "
                  "deleted (their files go at the next vacuum)")
    return exit_codes.OK


def cmd_vacuum(args: VacuumSettings) -> int:
    from obsrvr_ray.table.maintenance import vacuum

    for name, files in vacuum(_tables(args), _names(args), args.retention_hours, args.dry_run).items():
        print(f"{name}: {len(files)} files {'would be ' if args.dry_run else ''}removed")
    return exit_codes.OK


def cmd_restore(args: RestoreSettings) -> int:
    from obsrvr_ray.table.maintenance import restore

    target = parse_as_of(args.to)
    tables = _tables(args)
    if not _names(args):
        raise ConfigError("restore needs --table: each table has its own versions")
    for name in _names(args):
        metrics = restore(tables, name, target)
        print(f"{name}: restored to {args.to} as version {tables.table(name).version()} ({json.dumps(metrics)})")
    return exit_codes.OK


def cmd_export(args: TableExportSettings) -> int:
    from obsrvr_ray.query import TableReader
    from obsrvr_ray.sinks.files import write_table

    reader = TableReader(args.out, S3Options(endpoint_url=args.s3_endpoint_url, region=args.s3_region),
                         as_of=parse_as_of(args.as_of))
    name = args.name.replace("-", "_")
    rows = reader.read(name)
    order = {LEDGERS_TABLE: ["sequence"], TRANSACTIONS_TABLE: ["ledger_sequence", "transaction_index"],
             TRANSFERS_TABLE: ["ledger_sequence", "event_index"]}[name]
    rows = rows.sort_by([(c, "ascending") for c in order])
    written = write_table(rows, args.to, args.format, s3=S3Options(endpoint_url=args.s3_endpoint_url,
                                                                 region=args.s3_region))
    print(f"wrote {written.path} ({written.rows:,} rows, {written.bytes:,} bytes)")
    return exit_codes.OK


def cmd_verify(args: TablesFlags) -> int:
    from obsrvr_ray.table.maintenance import verify

    tables = _tables(args)
    names = _names(args) or tuple(t for t in TABLES
                                  if tables.table(t) is not None)
    problems = verify(tables, names)
    for problem in problems:
        print(f"problem: {problem}")
    print("OK" if not problems else f"{len(problems)} problems")
    return exit_codes.OK if not problems else exit_codes.FAILURES


def cmd_sql(args: SqlSettings) -> int:
    """DuckDB over the tables' committed snapshots, each registered under its name: DuckDB reads
    the Arrow dataset delta-rs hands it (no DuckDB extension needed) and pushes filters into it."""
    import duckdb

    from obsrvr_ray.table.maintenance import existing

    tables = _tables(args)
    as_of = parse_as_of(args.as_of)
    con = duckdb.connect()
    for name in existing(tables):
        con.register(name, tables.dataset(name, as_of))
    for name in ("asset_volume_hourly", "asset_volume_daily", "event_type_counts", "largest_transfers"):
        snapshot = tables.dataset(f"analytics/{name}")
        if snapshot is not None:
            con.register(name, snapshot)
    try:
        result = con.sql(args.query)
    except duckdb.Error as exc:
        raise ConfigError(f"query failed: {exc}") from exc
    if result is not None:
        result.show(max_rows=args.max_rows, max_width=200)
    return exit_codes.OK


def cmd_import(args: ImportSettings) -> int:
    from obsrvr_ray.chunks.layout_import import import_layout

    report = import_layout(args.source, args.out, S3Options(endpoint_url=args.s3_endpoint_url, region=args.s3_region))
    print(f"imported {report.chunks} chunk generations ({report.skipped} already there): "
          + ", ".join(f"{t} {n:,} rows" for t, n in sorted(report.rows.items())))
    return exit_codes.OK


def register(sub: argparse._SubParsersAction) -> None:
    table = sub.add_parser("table", help="the output's Delta tables: history, compact, retain, vacuum, restore, "
                           "export, verify, import")
    verbs = table.add_subparsers(dest="table_command", required=True)

    for name, helptext, command, model in (
        ("history", "the commits of each table, newest first", cmd_history, HistorySettings),
        ("compact", "rewrite small files into large ones and checkpoint the log (readers are not blocked)",
         cmd_compact, TablesFlags),
        ("retain", "delete rows older than an age", cmd_retain, RetainSettings),
        ("vacuum", "remove files no version within the retention window uses", cmd_vacuum, VacuumSettings),
        ("restore", "make an older version of a table its latest (a new commit)", cmd_restore, RestoreSettings),
        ("export", "write a table's snapshot as one Parquet, JSON lines or CSV file", cmd_export, TableExportSettings),
        ("verify", "audit: every row once, row counts equal to what the chunks committed", cmd_verify, TablesFlags),
        ("sql", "run a DuckDB query over the tables (each registered under its name)", cmd_sql, SqlSettings),
        ("import", "bring an output of the earlier layout (Parquet files and a _backfill manifest) into Delta "
         "tables", cmd_import, ImportSettings),
    ):
        add_command(verbs, name, helptext, command, model)
