"""Backfill settings: a YAML file and command-line flags, validated into one BackfillConfig.

Each setting is declared once below, as a field of the pydantic model BackfillConfig: its type
and check, its YAML key, its flag. A bad value is reported with the key (or flag) it came from;
an unknown key is reported with the known ones beside it, so a typo never silently falls back to
a default (obsrvr_ray.settings_model). Flags override the file.

    source:      {type, url, endpoint_url, region, anonymous, network_passphrase, prefetch}
    range:       {start_ledger, end_ledger} or {ledgers: "A-B,C"}, wait_for_end
    processing:  {batch_size, engine, concurrent_readers, events_from, decoder, source_patience, chain_check}
    filters:     {event_types, included_assets, accounts}
    output:      {path, endpoint_url, region, tables, formats, compression, partition_by,
                  max_rows_per_file, analytics, top_transfers}
    ray:         {address}
    metrics:     {port, file, progress_interval, log_level}
"""

from __future__ import annotations

import argparse
from functools import cache
from typing import Annotated, Any

from pydantic import create_model

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.ranges import Range, ledger_sequence, normalize, parse_ranges
from obsrvr_ray.schema import TABLES, TRANSFERS_TABLE
from obsrvr_ray.settings_model import (
    Flag,
    Positive,
    Settings,
    Text,
    Words,
    add_flags,
    flag_values,
    flags_of,
    one_of,
    read_yaml,
    some_of,
    text,
    translated,
    whole,
    words,
)
from obsrvr_ray.settings_model import (
    setting as flag_setting,
)
from obsrvr_ray.sinks.files import FORMATS, PARQUET_COMPRESSIONS
from obsrvr_ray.sources.open import source_kind
from obsrvr_ray.table.partitioning import check_keys
from obsrvr_ray.ttp.events import KINDS
from obsrvr_ray.ttp.extract import EVENT_SOURCES

ENGINES = ("tasks", "data")
SOURCE_TYPES = {"datalake": "lake", "s3": "s3", "rpc": "rpc"}  # YAML name -> the kind its URL form gives


def setting(default: Any, key: str, flag: str, help: str, cli: str = "value",
            alias: str | None = None) -> Any:
    """A field that is also a YAML key and a flag (settings_model.setting)."""
    return flag_setting(default, flag, help, cli, key=key, alias=alias)


def _partition_keys(raw: object) -> tuple[str, ...]:
    values = () if raw in ("", "none", []) else words(raw)
    check_keys(values)
    return values


def _ledgers(raw: object) -> tuple[Range, ...]:
    """Text ("A-B,C"), a YAML list of such items, or ranges already made ((A, B), ...) from Python."""
    if isinstance(raw, list | tuple) and all(isinstance(r, list | tuple) and len(r) == 2 for r in raw):
        return parse_ranges(",".join(f"{a}-{b}" for a, b in raw))
    return parse_ranges(",".join(str(x) for x in raw) if isinstance(raw, list) else text(raw))


Ledger = Annotated[int | None, translated(ledger_sequence)]


class BackfillConfig(Settings):
    source: Text = setting("", "source.url", "--source",
                           "ledger source: a data-lake directory, s3://bucket/prefix or a Stellar RPC http(s):// URL")
    source_type: Annotated[str | None, one_of(SOURCE_TYPES)] = setting(
        None, "source.type", "--source-type", "datalake, s3 or rpc; checked against the form of --source")
    s3_endpoint_url: Text | None = setting(None, "source.endpoint_url", "--s3-endpoint-url",
                                           "endpoint of an S3-compatible store holding the source lake")
    s3_region: Text | None = setting(None, "source.region", "--s3-region", "S3 region of the source lake")
    anonymous: Flag | None = setting(None, "source.anonymous", "--anonymous",
                                     "unsigned S3 requests (default: on for the public AWS bucket only)", "onoff")
    network: Text | None = setting(None, "source.network_passphrase", "--network",
                                   "network name or passphrase; default: what the source declares, else pubnet")
    prefetch: Annotated[int, whole(1)] = setting(8, "source.prefetch", "--prefetch",
                                                 "objects each reader fetches at once")
    start: Ledger = setting(None, "range.start_ledger", "--start", "first ledger")
    end: Ledger = setting(None, "range.end_ledger", "--end", "last ledger, inclusive")
    ledgers: Annotated[tuple[Range, ...], translated(_ledgers)] = setting(
        (), "range.ledgers", "--ledgers",
        "ledgers as ranges, e.g. 6154623,63092982-63093001 (instead of --start/--end)")
    wait_for_end: Flag = setting(False, "range.wait_for_end", "--wait-for-end",
                                 "wait for ledgers the source has not closed yet, instead of refusing a range past "
                                 "its newest", "onoff")
    batch_size: Annotated[int, whole(1)] = setting(
        64, "processing.batch_size", "--batch-size",
        "ledgers per chunk, the unit of reading and of commit (rounded up to whole lake batches)")
    concurrent_readers: Annotated[int, whole(1)] = setting(
        2, "processing.concurrent_readers", "--concurrent-readers", "reader actors fetching chunks from the source "
        "in parallel")
    engine: Annotated[str, one_of(ENGINES)] = setting(
        "tasks", "processing.engine", "--engine", "how chunks run on Ray: tasks fed by reader actors, or a Ray Data "
        "pipeline (ChunkDatasource into TableDatasink); both commit the same rows")
    events_from: Annotated[str, one_of(EVENT_SOURCES)] = setting(
        "auto", "processing.events_from", "--events-from",
        "token transfers: core's events, derived from operations, or core's when present")
    decoder: Annotated[str, one_of(("fast", "reference"))] = setting(
        "fast", "processing.decoder", "--decoder", "XDR decoder: ours, or stellar-sdk's (the reference)")
    source_patience: Positive = setting(
        600.0, "processing.source_patience", "--source-patience",
        "seconds a chunk keeps being retried while its source is unavailable, before it is left for a rerun")
    chain_check: Flag = setting(True, "processing.chain_check", "--no-chain-check",
                                "do not check the header hash chain", "off")
    event_types: Annotated[tuple[str, ...], some_of(KINDS)] = setting(
        (), "filters.event_types", "--event-types",
        "keep these token-transfer event types (repeatable or comma-separated)", "many")
    included_assets: Words = setting((), "filters.included_assets", "--assets",
                                     "keep these assets: native, CODE:ISSUER, CODE, or a token contract C...", "many")
    accounts: Words = setting((), "filters.accounts", "--accounts", "keep events from or to these addresses", "many")
    out: Text = setting("", "output.path", "--out", "output directory or s3://bucket/prefix")
    out_s3_endpoint_url: Text | None = setting(None, "output.endpoint_url", "--out-s3-endpoint-url",
                                               "endpoint of an S3-compatible store for the output")
    out_s3_region: Text | None = setting(None, "output.region", "--out-s3-region", "S3 region of the output")
    tables: Annotated[tuple[str, ...], some_of(tuple(TABLES))] = setting(
        (TRANSFERS_TABLE,), "output.tables", "--tables", f"tables to write: {', '.join(TABLES)}", "many")
    formats: Annotated[tuple[str, ...], some_of(FORMATS)] = setting(
        ("parquet",), "output.formats", "--format",
        f"file formats: {', '.join(FORMATS)} (repeatable or comma-separated)", "many", alias="--formats")
    compression: Annotated[str, one_of(PARQUET_COMPRESSIONS)] = setting(
        "zstd", "output.compression", "--compression", "Parquet compression")
    partition_by: Annotated[tuple[str, ...], translated(_partition_keys)] = setting(
        ("date",), "output.partition_by", "--partition-by",
        "hive partition keys, in order: date, hour, asset_code, event_type (or none)", "many")
    max_rows_per_file: Annotated[int, whole(1)] = setting(
        1_000_000, "output.max_rows_per_file", "--max-rows-per-file",
        "split a chunk's partition into files of at most this many rows")
    analytics: Flag = setting(True, "output.analytics", "--no-analytics",
                              "do not compute the volume, event-type and largest-transfer tables", "off")
    top_transfers: Annotated[int, whole(1)] = setting(10, "output.top_transfers", "--top-transfers",
                                                      "largest transfers kept per token")
    ray_address: Text | None = setting(
        None, "ray.address", "--ray-address",
        "Ray cluster to join (default: RAY_ADDRESS, else a running local cluster, else start one)", alias="--address")
    metrics_port: Annotated[int | None, whole(0)] = setting(
        None, "metrics.port", "--metrics-port", "serve Prometheus metrics on this port while the job runs")
    metrics_file: Text | None = setting(
        None, "metrics.file", "--metrics-file",
        "write the final Prometheus metrics to this file (node_exporter textfile format)")
    progress_interval: Positive = setting(
        10.0, "metrics.progress_interval", "--progress-interval",
        "seconds between progress lines when the output is not a terminal (job logs)")
    log_level: Annotated[str, one_of(("DEBUG", "INFO", "WARNING", "ERROR"))] = setting(
        "INFO", "metrics.log_level", "--log-level", "level of the JSON logs on stderr")
    retry_failed: bool = False
    reset_settings: bool = False
    verify_output: bool = False

    @property
    def ranges(self) -> tuple[Range, ...]:
        """The requested ledgers; empty only for --retry-failed over the whole output."""
        if self.ledgers:
            return self.ledgers
        return ((self.start, self.end),) if self.start is not None and self.end is not None else ()


def _settings() -> dict[str, dict]:
    """attr -> its key, flag, cli kind and help: the fields that are settings."""
    return flags_of(BackfillConfig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every setting's flag, defaulting to 'not given' so the YAML file's value stands."""
    parser.add_argument("--config", help="YAML file of settings; flags override it")
    add_flags(parser, BackfillConfig)
    parser.add_argument("--retry-failed", action="store_true",
                        help="read again only the ledgers recorded as failed (all of the output's without a range)")
    parser.add_argument("--reset-settings", action="store_true",
                        help="record these settings over the ones the output was written with; allowed only while "
                        "no ledger of it was written (every one failed, e.g. the source named the wrong network), "
                        "and with --retry-failed reads those ledgers again")
    parser.add_argument("--verify-output", action="store_true",
                        help="after the run, audit the tables: every row once, row counts equal to what the chunks "
                        "committed")


@cache
def _file_model() -> type[Settings]:
    """The file's shape: sections of keys, each key one setting (its value is checked by BackfillConfig)."""
    sections: dict[str, dict[str, Any]] = {}
    for s in _settings().values():
        section, _, key = s["key"].partition(".")
        sections.setdefault(section, {})[key] = (Any, None)
    return create_model("BackfillFile", __base__=Settings, **{
        section: (create_model(section, __base__=Settings, **keys) | None, None) for section, keys in sections.items()})


def read_file(path: str) -> tuple[dict[str, object], dict[str, str]]:
    """The file's settings by attribute, and the name each was given under (`path: section.key`)."""
    raw = read_yaml(path)
    _file_model().check(raw, where=path)
    by_key = {s["key"]: attr for attr, s in _settings().items()}
    values, names = {}, {}
    for section, body in raw.items():
        for key, value in (body or {}).items():
            if value is not None:
                attr = by_key[f"{section}.{key}"]
                values[attr], names[attr] = value, f"{path}: {section}.{key}"
    return values, names


def from_arguments(args: argparse.Namespace) -> BackfillConfig:
    """The YAML file (if any), then every flag given, then the checks that span settings."""
    values, names = read_file(args.config) if args.config else ({}, {})
    if args.ledgers is not None:  # a range given on the command line replaces the file's, in either form
        values.pop("start", None)
        values.pop("end", None)
    if args.start is not None or args.end is not None:
        values.pop("ledgers", None)
    given, flags = flag_values(args, BackfillConfig)
    values.update(given)
    names.update(flags)
    config = BackfillConfig.check({**values, "retry_failed": args.retry_failed, "reset_settings": args.reset_settings,
                                   "verify_output": args.verify_output}, names=names)
    return validate(config)


def validate(config: BackfillConfig) -> BackfillConfig:
    def name(attr: str) -> str:
        s = _settings()[attr]
        return f"{s['key']} ({s['flag']})"

    if not config.source:
        raise ConfigError(f"{name('source')} is required")
    if not config.out:
        raise ConfigError(f"{name('out')} is required")
    kind = source_kind(config.source)
    if kind == "etl":
        raise ConfigError(f"{name('source')}: an etl: export is one file, not a ledger store; use `obsrvr-ray export`")
    if config.source_type is not None and SOURCE_TYPES[config.source_type] != kind:
        raise ConfigError(f"{name('source_type')} is {config.source_type!r} but {name('source')} "
                          f"{config.source!r} is a {'local data lake' if kind == 'lake' else kind} source")
    if config.ledgers and (config.start is not None or config.end is not None):
        raise ConfigError(f"give either {name('ledgers')} or {name('start')}/{name('end')}, not both")
    if (config.start is None) != (config.end is None):
        missing = "end" if config.end is None else "start"
        raise ConfigError(f"{name(missing)} is required with {name('start' if missing == 'end' else 'end')}: "
                          "a backfill covers a bounded range")
    if not config.ranges and not config.retry_failed:
        raise ConfigError(f"no ledgers to backfill: give {name('start')} and {name('end')}, or {name('ledgers')}")
    if config.start is not None and config.end is not None and config.end < config.start:
        raise ConfigError(f"{name('end')} {config.end} is before {name('start')} {config.start}")
    if config.ranges:
        config = config.model_copy(update={"ledgers": normalize(config.ranges), "start": None, "end": None})
    if TRANSFERS_TABLE not in config.tables and (config.event_types or config.included_assets or config.accounts):
        raise ConfigError("filters apply to token_transfers, which output.tables (--tables) does not include")
    return config
