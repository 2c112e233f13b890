"""The live app's settings, from a Serve config file's `args` or from `obsrvr-ray serve` flags.

    rpc_url: http://127.0.0.1:8000/       # Stellar RPC to follow (getLedgers)
    dataset: /data/obsrvr                  # output dataset (a directory or s3://bucket/prefix)
    start: 2                               # first ledger when the dataset is empty
    lake: s3://.../pubnet                  # optional: ledgers older than the RPC node keeps
    network: pubnet                        # optional: else what the RPC node's getNetwork says
    tables: [ledgers, transactions, token_transfers]
    partition_by: [date]
    commit_every: 12                       # ledgers per commit cell (a fixed grid), so per file
    http_host: 127.0.0.1
    flight_host: 127.0.0.1
    flight_port: 8815
    api: {ready_lag: 5, ws_max_connections: 1000, ws_max_per_ip: 20, ws_idle_timeout: 300}
    security: {key_store: /etc/obsrvr/keys.json, tls_cert: ..., tls_key: ..., dev_mode: false, ...}
    resilience: {rpc_timeout: 10, rpc_max_concurrent: 4, lake_max_concurrent: 8, bulkhead_wait: 10}
    maintenance: {compact_every: 600, vacuum_retention_hours: 168, retention: {token_transfers: 365d}}
                                           # or `maintenance: off`; the tables' schedule
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from obsrvr_ray.actors.follower import FollowerConfig
from obsrvr_ray.chunks.process import ChunkSettings
from obsrvr_ray.errors import ConfigError
from obsrvr_ray.network import resolve_passphrase
from obsrvr_ray.objectstore import S3Options
from obsrvr_ray.pipeline import ExtractOptions
from obsrvr_ray.ranges import ledger_number
from obsrvr_ray.security.settings import SecuritySettings
from obsrvr_ray.serve.api import ApiSettings
from obsrvr_ray.serve.deployments import LiveAppConfig
from obsrvr_ray.sinks.layout import OutputSpec
from obsrvr_ray.sinks.partitioning import check_keys
from obsrvr_ray.sources.open import SourceOptions
from obsrvr_ray.sources.rpc import RpcClient
from obsrvr_ray.table.maintenance import MaintenancePolicy

_KEYS = {"rpc_url", "dataset", "start", "lake", "network", "tables", "partition_by", "commit_every", "http_host",
         "flight_host", "flight_port", "api", "security", "s3_endpoint_url", "s3_region", "recent_ledgers",
         "decoder", "resilience", "maintenance"}
# resilience: the outbound calls' timeout and bulkheads (concurrent calls per dependency, and how
# long a call may wait for a slot); name -> (type, smallest value, default).
_RESILIENCE: dict[str, tuple[type, float, float]] = {
    "rpc_timeout": (float, 0.1, 10.0), "rpc_max_concurrent": (int, 1, 4), "lake_max_concurrent": (int, 1, 8),
    "bulkhead_wait": (float, 0.0, 10.0),
}


def _absolute(location: object) -> str:
    """Replicas run in other directories: a local path is made absolute where it is given."""
    text = str(location)
    return text if "://" in text or text.startswith("etl:") else os.path.abspath(text)


def resilience_of(given: object) -> dict[str, float]:
    """The `resilience` mapping, checked, with defaults for what it leaves out."""
    if not isinstance(given, Mapping):
        raise ConfigError(f"resilience: expected a mapping, got {given!r}")
    unknown = set(given) - set(_RESILIENCE)
    if unknown:
        raise ConfigError(f"resilience: unknown settings {sorted(unknown)}; known: {sorted(_RESILIENCE)}")
    out = {}
    for name, (kind, least, default) in _RESILIENCE.items():
        value = given.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value != kind(value) or value < least:
            raise ConfigError(f"resilience.{name}: expected {'an integer' if kind is int else 'a number'} "
                              f">= {least:g}, got {value!r}")
        out[name] = kind(value)
    return out


def maintenance_of(given: object) -> MaintenancePolicy | None:
    """The `maintenance` mapping (or `off`), checked."""
    if given is False or given == "off":
        return None
    if not isinstance(given, Mapping):
        raise ConfigError(f"maintenance: expected a mapping or off, got {given!r}")
    known = {"compact_every", "vacuum_retention_hours", "retention"}
    if set(given) - known:
        raise ConfigError(f"maintenance: unknown settings {sorted(set(given) - known)}; known: {sorted(known)}")
    retention = given.get("retention") or {}
    if not isinstance(retention, Mapping):
        raise ConfigError(f"maintenance.retention: expected table: age, got {retention!r}")
    try:
        return MaintenancePolicy(float(given.get("compact_every", 600)), tuple((str(k), str(v)) for k, v in
                                                                            retention.items()),
                                 float(given.get("vacuum_retention_hours", 168)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"maintenance: {exc}") from exc


def network_of(rpc_url: str, network: str | None) -> str:
    if network:
        return resolve_passphrase(network)
    passphrase = RpcClient(rpc_url, timeout=10).get_network().get("passphrase")
    if not passphrase:
        raise ConfigError(f"{rpc_url} did not say its network: give `network`")
    return passphrase


def live_config_from_args(args: Mapping) -> LiveAppConfig:
    unknown = set(args) - _KEYS
    if unknown:
        raise ConfigError(f"unknown settings {sorted(unknown)}; known: {sorted(_KEYS)}")
    for key in ("rpc_url", "dataset"):
        if not args.get(key):
            raise ConfigError(f"`{key}` is required")
    args = {**args, **{k: _absolute(args[k]) for k in ("dataset", "lake") if args.get(k)}}
    partition_by = tuple(args.get("partition_by") or ("date",))
    check_keys(partition_by)
    s3 = S3Options(endpoint_url=args.get("s3_endpoint_url"), region=args.get("s3_region"))
    output = OutputSpec(location=str(args["dataset"]), formats=("parquet",), partition_by=partition_by, s3=s3)
    passphrase = network_of(str(args["rpc_url"]), args.get("network"))
    tables = tuple(args.get("tables") or ("ledgers", "transactions", "token_transfers"))
    settings = ChunkSettings(tables=tables, output=output,
                             extract=ExtractOptions(passphrase, decoder=args.get("decoder", "fast")))
    resilience = resilience_of(args.get("resilience") or {})
    follower = FollowerConfig(
        rpc_url=str(args["rpc_url"]), settings=settings, start=ledger_number("start", args.get("start", 2)),
        lake=args.get("lake"),
        lake_options=SourceOptions(s3_endpoint_url=args.get("s3_endpoint_url"), s3_region=args.get("s3_region"),
                                   network_passphrase=passphrase, max_concurrent=resilience["lake_max_concurrent"],
                                   bulkhead_wait=resilience["bulkhead_wait"]),
        commit_every=int(args.get("commit_every", 12)),
        recent_ledgers=int(args.get("recent_ledgers", 720)),
        rpc_timeout=resilience["rpc_timeout"], rpc_max_concurrent=resilience["rpc_max_concurrent"],
        bulkhead_wait=resilience["bulkhead_wait"], maintenance=maintenance_of(args.get("maintenance", {})),
    )
    http_host = str(args.get("http_host", "127.0.0.1"))
    flight_host = str(args.get("flight_host", http_host))
    security = dict(args.get("security") or {})
    security.setdefault("bind_hosts", [http_host, flight_host])
    try:
        api = ApiSettings(**dict(args.get("api") or {}))
    except TypeError as exc:
        raise ConfigError(f"api: {exc}") from exc
    return LiveAppConfig(follower=follower, dataset=output.location, s3=s3, api=api,
                         security=SecuritySettings.load(security), flight_host=flight_host,
                         flight_port=int(args.get("flight_port", 8815)))
