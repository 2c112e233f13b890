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
    mtls_port: 8443                        # with security.tls.client_ca: HTTPS taking client certificates
    api: {ready_lag: 5, ws_max_connections: 1000, ws_max_per_ip: 20, ws_idle_timeout: 300}
    security: {key_store: /etc/obsrvr/keys.json, tls_cert: ..., tls_key: ..., dev_mode: false, ...,
               tls: {client_ca: ..., client_cert: required, crl: ..., identities: {spiffe://...: [reader]}}}
    resilience: {rpc_timeout: 10, rpc_max_concurrent: 4, lake_max_concurrent: 8, bulkhead_wait: 10}
    maintenance: {compact_every: 600, vacuum_retention_hours: 168, retention: {token_transfers: 365d}}
                                           # or `maintenance: off`; the tables' schedule
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field

from obsrvr_ray.chunks.process import ChunkSettings
from obsrvr_ray.errors import ConfigError
from obsrvr_ray.live.service import FollowerConfig
from obsrvr_ray.network import resolve_network
from obsrvr_ray.objectstore import S3Options
from obsrvr_ray.pipeline import ExtractOptions
from obsrvr_ray.ranges import ledger_sequence
from obsrvr_ray.schema import LEDGERS_TABLE, TABLES, TRANSACTIONS_TABLE, TRANSFERS_TABLE
from obsrvr_ray.security.security_settings import SecuritySettings
from obsrvr_ray.serve.api import ApiSettings
from obsrvr_ray.settings_model import Settings, Text, one_of, some_of, translated, whole
from obsrvr_ray.sinks.layout import OutputSpec
from obsrvr_ray.sources.open import SourceOptions
from obsrvr_ray.sources.rpc import RpcClient
from obsrvr_ray.table.maintenance import MaintenancePolicy
from obsrvr_ray.table.partitioning import check_keys


@dataclass(frozen=True)
class LiveAppConfig:
    """What the live app's deployments are built from (obsrvr_ray.serve.deployments.compose)."""

    follower: FollowerConfig
    dataset: str  # the follower's output location, read by the API and Flight
    s3: S3Options = field(default_factory=S3Options)
    api: ApiSettings = field(default_factory=ApiSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    flight_host: str = "127.0.0.1"
    flight_port: int = 8815
    http_port: int = 8000  # Ray Serve's HTTP proxy (`obsrvr-ray serve`; a RayService sets its own)
    http_host: str = "127.0.0.1"
    mtls_port: int = 8443  # the Api replicas' own HTTPS listener, when security.tls takes client certificates


class ResilienceSettings(Settings):
    """The outbound calls' timeout and bulkheads (concurrent calls per dependency, and how long a
    call may wait for a slot). Strict: a file's "4" or 1.5 for a count is a mistake, not a 4 or a 1."""

    model_config = ConfigDict(strict=True)

    rpc_timeout: Annotated[float, Field(ge=0.1)] = 10.0
    rpc_max_concurrent: Annotated[int, Field(ge=1)] = 4
    lake_max_concurrent: Annotated[int, Field(ge=1)] = 8
    bulkhead_wait: Annotated[float, Field(ge=0)] = 10.0


class MaintenanceSettings(Settings):
    """The tables' schedule (see MaintenancePolicy)."""

    compact_every: Annotated[float, Field(gt=0)] = 600.0
    vacuum_retention_hours: Annotated[float, Field(ge=0)] = 168.0
    retention: dict[str, str] = Field(default_factory=dict)  # table -> age, e.g. token_transfers: 365d

    def policy(self) -> MaintenancePolicy:
        return MaintenancePolicy(self.compact_every, tuple(self.retention.items()), self.vacuum_retention_hours)


def _off_is_none(raw: object) -> object:
    return None if raw is False or raw == "off" else raw


def _partition_keys(raw: object) -> tuple[str, ...]:
    keys = tuple(raw) if isinstance(raw, list | tuple) else (raw,)
    check_keys(keys)
    return keys


class ServeSettings(Settings):
    """The live app's settings: a Serve config's `args`, or `obsrvr-ray serve`'s file and flags."""

    rpc_url: Text
    dataset: Text
    start: Annotated[int, translated(ledger_sequence)] = 2
    lake: Text | None = None
    network: Text | None = None
    tables: Annotated[tuple[str, ...], some_of(tuple(TABLES))] = (LEDGERS_TABLE, TRANSACTIONS_TABLE, TRANSFERS_TABLE)
    partition_by: Annotated[tuple[str, ...], translated(_partition_keys)] = ("date",)
    commit_every: Annotated[int, whole(1)] = 12
    http_host: Text = "127.0.0.1"
    http_port: Annotated[int, whole(0)] = 8000
    flight_host: Text | None = None  # default: http_host
    flight_port: Annotated[int, whole(0)] = 8815
    mtls_port: Annotated[int, whole(0)] = 8443  # HTTPS with client certificates (security.tls.client_ca)
    api: ApiSettings = ApiSettings()
    # read into SecuritySettings together with the environment's OBSRVR_* variables
    security: dict[str, Any] = Field(default_factory=dict)
    s3_endpoint_url: Text | None = None
    s3_region: Text | None = None
    recent_ledgers: Annotated[int, whole(1)] = 720
    decoder: Annotated[str, one_of(("fast", "reference"))] = "fast"
    resilience: ResilienceSettings = ResilienceSettings()
    maintenance: Annotated[MaintenanceSettings | None, BeforeValidator(_off_is_none)] = MaintenanceSettings()


def _absolute(location: str) -> str:
    """Replicas run in other directories: a local path is made absolute where it is given."""
    return location if "://" in location or location.startswith("etl:") else os.path.abspath(location)


def network_of(rpc_url: str, network: str | None) -> str:
    """The app's network: `network`, else what the RPC node says (the one place it is asked)."""
    declared = None if network else RpcClient(rpc_url, timeout=10).get_network().get("passphrase")
    if not network and not declared:
        raise ConfigError(f"{rpc_url} did not say its network: give `network`")
    return resolve_network(network, declared)


def live_config_from_args(args: Mapping, names: Mapping[str, str] | None = None) -> LiveAppConfig:
    """The app from its settings; `names` tells the flags some of them came from."""
    given = ServeSettings.check(args, names=names)
    dataset = _absolute(given.dataset)
    s3 = S3Options(endpoint_url=given.s3_endpoint_url, region=given.s3_region)
    output = OutputSpec(location=dataset, formats=("parquet",), partition_by=given.partition_by, s3=s3)
    passphrase = network_of(given.rpc_url, given.network)
    extract = ExtractOptions(passphrase, decoder=given.decoder)
    settings = ChunkSettings(tables=given.tables, output=output, extract=extract)
    resilience = given.resilience
    follower = FollowerConfig(
        rpc_url=given.rpc_url, settings=settings, start=given.start,
        lake=_absolute(given.lake) if given.lake else None,
        lake_options=SourceOptions(s3_endpoint_url=given.s3_endpoint_url, s3_region=given.s3_region,
                                   network_passphrase=passphrase, max_concurrent=resilience.lake_max_concurrent,
                                   bulkhead_wait=resilience.bulkhead_wait),
        commit_every=given.commit_every, recent_ledgers=given.recent_ledgers,
        rpc_timeout=resilience.rpc_timeout, rpc_max_concurrent=resilience.rpc_max_concurrent,
        bulkhead_wait=resilience.bulkhead_wait,
        maintenance=given.maintenance.policy() if given.maintenance else None,
    )
    flight_host = given.flight_host or given.http_host
    security = {"bind_hosts": [given.http_host, flight_host], **given.security}
    return LiveAppConfig(follower=follower, dataset=output.location, s3=s3, api=given.api,
                         security=SecuritySettings.load(security, prefix="security."), flight_host=flight_host,
                         flight_port=given.flight_port, http_port=given.http_port, http_host=given.http_host,
                         mtls_port=given.mtls_port)
