"""Backfill settings: a YAML file and command-line flags, validated into one BackfillConfig.

Each setting is declared once below: its YAML key, its flag, how its value is checked. A bad
value is reported with the key (or flag) it came from; an unknown key is reported with the
known ones beside it, so a typo never silently falls back to a default. Flags override the file.

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
import difflib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.ranges import Range, ledger_number, normalize, parse_ranges
from obsrvr_ray.schema import TABLES
from obsrvr_ray.sinks.files import FORMATS, PARQUET_COMPRESSIONS
from obsrvr_ray.sinks.partitioning import check_keys
from obsrvr_ray.sources.open import source_kind
from obsrvr_ray.ttp.events import KINDS
from obsrvr_ray.ttp.extract import EVENT_SOURCES

ENGINES = ("tasks", "data")
SOURCE_TYPES = {"datalake": "lake", "s3": "s3", "rpc": "rpc"}  # YAML name -> the kind its URL form gives


@dataclass(frozen=True)
class BackfillConfig:
    source: str = ""
    source_type: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    anonymous: bool | None = None
    network: str | None = None  # a name or a passphrase; default: what the source declares
    prefetch: int = 8
    start: int | None = None
    end: int | None = None
    ledgers: tuple[Range, ...] = ()
    wait_for_end: bool = False
    batch_size: int = 64
    engine: str = "tasks"
    concurrent_readers: int = 2
    events_from: str = "auto"
    decoder: str = "fast"
    chain_check: bool = True
    source_patience: float = 600.0
    event_types: tuple[str, ...] = ()
    included_assets: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    out: str = ""
    out_s3_endpoint_url: str | None = None
    out_s3_region: str | None = None
    tables: tuple[str, ...] = ("token_transfers",)
    formats: tuple[str, ...] = ("parquet",)
    compression: str = "zstd"
    partition_by: tuple[str, ...] = ("date",)
    max_rows_per_file: int = 1_000_000
    analytics: bool = True
    top_transfers: int = 10
    ray_address: str | None = None
    metrics_port: int | None = None
    metrics_file: str | None = None
    progress_interval: float = 10.0
    log_level: str = "INFO"
    retry_failed: bool = False
    reset_settings: bool = False
    verify_output: bool = False

    @property
    def ranges(self) -> tuple[Range, ...]:
        """The requested ledgers; empty only for --retry-failed over the whole output."""
        if self.ledgers:
            return self.ledgers
        return ((self.start, self.end),) if self.start is not None and self.end is not None else ()


# --- value checks: each takes the name the value came under (YAML key or flag) and the raw value


def _text(name: str, raw: object) -> str:
    if not isinstance(raw, str | int | float) or isinstance(raw, bool) or str(raw) == "":
        raise ConfigError(f"{name}: expected text, got {raw!r}")
    return str(raw)


def _integer(minimum: int) -> Callable[[str, object], int]:
    def check(name: str, raw: object) -> int:
        try:
            value = int(raw) if not isinstance(raw, bool | float) else None
        except (TypeError, ValueError):
            value = None
        if value is None or value < minimum:
            raise ConfigError(f"{name}: expected a whole number >= {minimum}, got {raw!r}")
        return value

    return check


def _number(name: str, raw: object) -> float:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = -1.0
    if isinstance(raw, bool) or value <= 0:
        raise ConfigError(f"{name}: expected a positive number, got {raw!r}")
    return value


def _boolean(name: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")


def _words(name: str, raw: object) -> tuple[str, ...]:
    """A YAML list, or text with commas (flags may also repeat)."""
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if not isinstance(item, str | int) or isinstance(item, bool):
            raise ConfigError(f"{name}: expected a list of names, got {raw!r}")
        out.extend(w.strip() for w in str(item).split(",") if w.strip())
    return tuple(out)


def _one_of(options) -> Callable[[str, object], str]:
    def check(name: str, raw: object) -> str:
        value = _text(name, raw)
        if value not in options:
            raise ConfigError(f"{name}: {value!r} is not one of {', '.join(options)}")
        return value

    return check


def _some_of(options) -> Callable[[str, object], tuple[str, ...]]:
    def check(name: str, raw: object) -> tuple[str, ...]:
        values = _words(name, raw)
        unknown = [v for v in values if v not in options]
        if unknown:
            raise ConfigError(f"{name}: {', '.join(map(repr, unknown))} not among {', '.join(options)}")
        if not values:
            raise ConfigError(f"{name}: name at least one of {', '.join(options)}")
        return values

    return check


def _partition_keys(name: str, raw: object) -> tuple[str, ...]:
    values = () if raw in ("", "none", []) else _words(name, raw)
    try:
        check_keys(values)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return values


def _ledgers(name: str, raw: object) -> tuple[Range, ...]:
    text = ",".join(str(x) for x in raw) if isinstance(raw, list) else _text(name, raw)
    try:
        return parse_ranges(text)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None


@dataclass(frozen=True)
class Setting:
    key: str  # YAML path
    attr: str  # BackfillConfig field
    check: Callable[[str, object], object]
    flag: str
    help: str
    cli: str = "value"  # value; many (repeatable, comma-separated); off (a flag that sets False); onoff


SETTINGS: tuple[Setting, ...] = (
    Setting("source.url", "source", _text, "--source",
            "ledger source: a data-lake directory, s3://bucket/prefix or a Stellar RPC http(s):// URL"),
    Setting("source.type", "source_type", _one_of(SOURCE_TYPES), "--source-type",
            "datalake, s3 or rpc; checked against the form of --source"),
    Setting("source.endpoint_url", "s3_endpoint_url", _text, "--s3-endpoint-url",
            "endpoint of an S3-compatible store holding the source lake"),
    Setting("source.region", "s3_region", _text, "--s3-region", "S3 region of the source lake"),
    Setting("source.anonymous", "anonymous", _boolean, "--anonymous",
            "unsigned S3 requests (default: on for the public AWS bucket only)", "onoff"),
    Setting("source.network_passphrase", "network", _text, "--network",
            "network name or passphrase; default: what the source declares, else pubnet"),
    Setting("source.prefetch", "prefetch", _integer(1), "--prefetch", "objects each reader fetches at once"),
    Setting("range.start_ledger", "start", ledger_number, "--start", "first ledger"),
    Setting("range.end_ledger", "end", ledger_number, "--end", "last ledger, inclusive"),
    Setting("range.ledgers", "ledgers", _ledgers, "--ledgers",
            "ledgers as ranges, e.g. 6154623,63092982-63093001 (instead of --start/--end)"),
    Setting("range.wait_for_end", "wait_for_end", _boolean, "--wait-for-end",
            "wait for ledgers the source has not closed yet, instead of refusing a range past its newest", "onoff"),
    Setting("processing.batch_size", "batch_size", _integer(1), "--batch-size",
            "ledgers per chunk, the unit of reading and of commit (rounded up to whole lake batches)"),
    Setting("processing.concurrent_readers", "concurrent_readers", _integer(1), "--concurrent-readers",
            "reader actors fetching chunks from the source in parallel"),
    Setting("processing.engine", "engine", _one_of(ENGINES), "--engine",
            "how chunks run on Ray: tasks fed by reader actors, or a Ray Data pipeline (ChunkDatasource into "
            "TableDatasink); both commit the same rows"),
    Setting("processing.events_from", "events_from", _one_of(EVENT_SOURCES), "--events-from",
            "token transfers: core's events, derived from operations, or core's when present"),
    Setting("processing.decoder", "decoder", _one_of(("fast", "reference")), "--decoder",
            "XDR decoder: ours, or stellar-sdk's (the reference)"),
    Setting("processing.source_patience", "source_patience", _number, "--source-patience",
            "seconds a chunk keeps being retried while its source is unavailable, before it is left for a rerun"),
    Setting("processing.chain_check", "chain_check", _boolean, "--no-chain-check",
            "do not check the header hash chain", "off"),
    Setting("filters.event_types", "event_types", _some_of(KINDS), "--event-types",
            "keep these token-transfer event types (repeatable or comma-separated)", "many"),
    Setting("filters.included_assets", "included_assets", _words, "--assets",
            "keep these assets: native, CODE:ISSUER, CODE, or a token contract C...", "many"),
    Setting("filters.accounts", "accounts", _words, "--accounts", "keep events from or to these addresses",
            "many"),
    Setting("output.path", "out", _text, "--out", "output directory or s3://bucket/prefix"),
    Setting("output.endpoint_url", "out_s3_endpoint_url", _text, "--out-s3-endpoint-url",
            "endpoint of an S3-compatible store for the output"),
    Setting("output.region", "out_s3_region", _text, "--out-s3-region", "S3 region of the output"),
    Setting("output.tables", "tables", _some_of(tuple(TABLES)), "--tables",
            f"tables to write: {', '.join(TABLES)}", "many"),
    Setting("output.formats", "formats", _some_of(FORMATS), "--formats", f"file formats: {', '.join(FORMATS)}",
            "many"),
    Setting("output.compression", "compression", _one_of(PARQUET_COMPRESSIONS), "--compression",
            "Parquet compression"),
    Setting("output.partition_by", "partition_by", _partition_keys, "--partition-by",
            "hive partition keys, in order: date, hour, asset_code, event_type (or none)", "many"),
    Setting("output.max_rows_per_file", "max_rows_per_file", _integer(1), "--max-rows-per-file",
            "split a chunk's partition into files of at most this many rows"),
    Setting("output.analytics", "analytics", _boolean, "--no-analytics",
            "do not compute the volume, event-type and largest-transfer tables", "off"),
    Setting("output.top_transfers", "top_transfers", _integer(1), "--top-transfers",
            "largest transfers kept per token"),
    Setting("ray.address", "ray_address", _text, "--address",
            "Ray cluster to join (default: RAY_ADDRESS, else a running local cluster, else start one)"),
    Setting("metrics.port", "metrics_port", _integer(0), "--metrics-port",
            "serve Prometheus metrics on this port while the job runs"),
    Setting("metrics.file", "metrics_file", _text, "--metrics-file",
            "write the final Prometheus metrics to this file (node_exporter textfile format)"),
    Setting("metrics.progress_interval", "progress_interval", _number, "--progress-interval",
            "seconds between progress lines when the output is not a terminal (job logs)"),
    Setting("metrics.log_level", "log_level", _one_of(("DEBUG", "INFO", "WARNING", "ERROR")), "--log-level",
            "level of the JSON logs on stderr"),
)
_BY_ATTR = {s.attr: s for s in SETTINGS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every setting's flag, defaulting to 'not given' so the YAML file's value stands."""
    parser.add_argument("--config", help="YAML file of settings; flags override it")
    actions = {"value": "store", "many": "append", "onoff": argparse.BooleanOptionalAction}
    for s in SETTINGS:
        if s.cli == "off":
            parser.add_argument(s.flag, dest=s.attr, action="store_const", const=False, default=None, help=s.help)
        else:
            parser.add_argument(s.flag, dest=s.attr, action=actions[s.cli], default=None, help=s.help)
    parser.add_argument("--retry-failed", action="store_true",
                        help="read again only the ledgers recorded as failed (all of the output's without a range)")
    parser.add_argument("--reset-settings", action="store_true",
                        help="record these settings over the ones the output was written with; allowed only while "
                        "no ledger of it was written (every one failed, e.g. the source named the wrong network), "
                        "and with --retry-failed reads those ledgers again")
    parser.add_argument("--verify-output", action="store_true",
                        help="after the run, audit the tables: every row once, row counts equal to what the chunks "
                        "committed")


class _StrictLoader(yaml.SafeLoader):
    """safe_load, but a key given twice is an error, not a silent override."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: str) -> dict[str, object]:
    """The file's settings by attribute, each checked and named by its YAML key."""
    try:
        raw = yaml.load(Path(path).read_text(), Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    raw = {} if raw is None else raw
    sections: dict[str, set[str]] = {}
    for s in SETTINGS:
        section, _, key = s.key.partition(".")
        sections.setdefault(section, set()).add(key)
    values: dict[str, object] = {}
    for section, body in _mapping(path, "", raw).items():
        if section not in sections:
            raise ConfigError(_unknown(path, section, sections))
        for key, value in _mapping(path, section, {} if body is None else body).items():
            if key not in sections[section]:
                raise ConfigError(_unknown(path, f"{section}.{key}", sections[section], key))
            if value is None:
                continue
            setting = next(s for s in SETTINGS if s.key == f"{section}.{key}")
            try:
                values[setting.attr] = setting.check(setting.key, value)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from None
    return values


def _mapping(path: str, where: str, raw: object) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {where or 'the file'}: expected a mapping of keys, got {type(raw).__name__}")
    return raw


def _unknown(path: str, key: str, known, leaf: str | None = None) -> str:
    close = difflib.get_close_matches(leaf or key, sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{path}: {key}: unknown key (known here: {', '.join(sorted(known))}){hint}"


def from_arguments(args: argparse.Namespace) -> BackfillConfig:
    """The YAML file (if any), then every flag given, then the checks that span settings."""
    values = read_yaml(args.config) if args.config else {}
    if args.ledgers is not None:  # a range given on the command line replaces the file's, in either form
        values.pop("start", None)
        values.pop("end", None)
    if args.start is not None or args.end is not None:
        values.pop("ledgers", None)
    for s in SETTINGS:
        given = getattr(args, s.attr, None)
        if given is None:
            continue
        values[s.attr] = given if isinstance(given, bool) else s.check(s.flag, given)
    config = replace(BackfillConfig(), **values, retry_failed=args.retry_failed,
                     reset_settings=args.reset_settings, verify_output=args.verify_output)
    return validate(config)


def validate(config: BackfillConfig) -> BackfillConfig:
    def name(attr: str) -> str:
        s = _BY_ATTR[attr]
        return f"{s.key} ({s.flag})"

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
        config = replace(config, ledgers=normalize(config.ranges), start=None, end=None)
    if "token_transfers" not in config.tables and (config.event_types or config.included_assets or config.accounts):
        raise ConfigError("filters apply to token_transfers, which output.tables (--tables) does not include")
    return config
