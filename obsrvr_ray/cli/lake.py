"""`obsrvr-ray lake import`: build galexie-layout data lakes from ledger files (a lake of
generated ledgers: `obsrvr-sandbox generate`)."""

from __future__ import annotations

import argparse

from obsrvr_ray import exit_codes
from obsrvr_ray.network import network_name, resolve_passphrase


def cmd_lake_import(args: argparse.Namespace) -> int:
    from obsrvr_ray.objectstore import S3Options, open_store
    from obsrvr_ray.sinks.lake_writer import LakeWriter, import_files
    from obsrvr_ray.sources.lake_layout import LakeConfig

    config = LakeConfig(
        network_passphrase=resolve_passphrase(args.network),
        ledgers_per_batch=args.ledgers_per_batch,
        batches_per_partition=args.batches_per_partition,
    )
    store = open_store(args.out, S3Options(endpoint_url=args.s3_endpoint_url, region=args.s3_region))
    report = import_files(args.files, LakeWriter(store, config))
    print(f"imported {report.ledgers} ledgers ({report.first}…{report.last}) into {report.objects} objects "
          f"at {store.url} (network {network_name(config.network_passphrase)})")
    return exit_codes.OK


def register(sub: argparse._SubParsersAction) -> None:
    lake = sub.add_parser("lake", help="build and inspect galexie-layout data lakes")
    lake_sub = lake.add_subparsers(dest="lake_command", required=True)
    imp = lake_sub.add_parser("import", help="build a lake from ledger files (raw or batched XDR, "
                              ".gz/.zst/.zstd, or base64 lines)")
    imp.add_argument("files", nargs="+")
    imp.add_argument("--out", required=True, help="lake root: a directory or s3://bucket/prefix")
    imp.add_argument("--network", default="pubnet", help="network the ledgers belong to (written to .config.json)")
    imp.add_argument("--ledgers-per-batch", type=int, default=1)
    imp.add_argument("--batches-per-partition", type=int, default=64000)
    imp.add_argument("--s3-endpoint-url")
    imp.add_argument("--s3-region")
    imp.set_defaults(func=cmd_lake_import)

