"""Turn a `--source` argument into a source: the form of the string names the kind.

  /path/to/lake, file:///path   galexie data lake on local disk
  s3://bucket/prefix             galexie data lake on S3 (or any S3-compatible store)
  http(s)://host:port/...        Stellar RPC (getLedgers)
  etl:/path/to/file.jsonl        stellar-etl export_ledger_transaction JSON lines
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.objectstore import LocalStore, ObjectStore, S3Options, S3Store
from obsrvr_ray.resilience import Bulkhead
from obsrvr_ray.sources.base import LedgerSource
from obsrvr_ray.sources.etl import EtlSource
from obsrvr_ray.sources.lake_layout import PUBNET_PUBLIC_LAKE, PUBNET_PUBLIC_LAKE_REGION
from obsrvr_ray.sources.lake_source import LakeSource
from obsrvr_ray.sources.rpc import RpcSource

PUBLIC_BUCKET = PUBNET_PUBLIC_LAKE.removeprefix("s3://").split("/")[0]


@dataclass(frozen=True)
class SourceOptions:
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    anonymous: bool | None = None  # None: anonymous for the public AWS bucket only
    network_passphrase: str | None = None  # for sources that do not declare one (etl)
    prefetch: int = 8
    rpc_headers: tuple[tuple[str, str], ...] = ()
    max_concurrent: int | None = None  # calls in flight to the source at once (bulkhead); default: prefetch
    bulkhead_wait: float = 30.0  # seconds a call waits for a free slot before it fails


@dataclass(frozen=True)
class SourceSpec:
    """A source as a worker opens it: the `--source` string and its options, small, picklable
    and hashable. The driver opens it once to learn what the source declares (network, grid,
    newest ledger); each worker process opens its own, with its own clients, circuit breaker and
    bulkhead, and keeps it across the chunks it reads."""

    location: str
    options: SourceOptions = SourceOptions()

    def open(self) -> LedgerSource:
        return open_source(self.location, self.options)


def source_kind(spec: str) -> str:
    if spec.startswith("etl:"):
        return "etl"
    if spec.startswith(("http://", "https://")):
        return "rpc"
    if spec.startswith("s3://"):
        return "s3"
    return "lake"


def open_source(spec: str, options: SourceOptions | None = None) -> LedgerSource:
    opts = options or SourceOptions()
    kind = source_kind(spec)
    if kind == "etl":
        path = Path(spec.removeprefix("etl:"))
        if not path.is_file():  # said once here, not once per ledger asked of it
            raise ConfigError(f"stellar-etl export {path}: no such file")
        return EtlSource(path, opts.network_passphrase)
    limit = opts.max_concurrent or max(1, opts.prefetch)
    if kind == "rpc":
        return RpcSource(spec, headers=dict(opts.rpc_headers) or None,
                         bulkhead=Bulkhead(f"rpc {spec}", limit=limit, max_wait=opts.bulkhead_wait))
    if kind == "s3":
        bucket, _, prefix = spec.removeprefix("s3://").partition("/")
        if not bucket:
            raise ConfigError(f"--source {spec!r}: no bucket in the S3 URL")
        public = bucket == PUBLIC_BUCKET
        s3 = S3Options(
            endpoint_url=opts.s3_endpoint_url,
            region=opts.s3_region or (PUBNET_PUBLIC_LAKE_REGION if public else None),
            anonymous=public if opts.anonymous is None else opts.anonymous,
        )
        return _lake(S3Store(bucket, prefix, s3), opts, limit)
    root = Path(spec.removeprefix("file://"))
    if not root.is_dir():  # said once here, not once per ledger asked of it
        raise ConfigError(f"data lake {root}: no such directory")
    return _lake(LocalStore(root), opts, limit)


def _lake(store: ObjectStore, opts: SourceOptions, limit: int) -> LakeSource:
    return LakeSource(store, prefetch=opts.prefetch,
                      bulkhead=Bulkhead(f"lake {store.url}", limit=limit, max_wait=opts.bulkhead_wait))
