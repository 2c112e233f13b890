"""`obsrvr-ray lake import`: build galexie-layout data lakes from ledger files (a lake of
generated ledgers: `obsrvr-sandbox generate`)."""

from __future__ import annotations

import argparse
from typing import Annotated

from obsrvr_ray import exit_codes
from obsrvr_ray.cli.common import add_command
from obsrvr_ray.network import network_name, resolve_passphrase
from obsrvr_ray.settings_model import Settings, Text, setting, whole


class LakeImportSettings(Settings):
    """The flags of `lake import`."""

    files: tuple[Text, ...] = setting(..., "files", "ledger files to import", "positionals")
    out: Text = setting(..., "--out", "lake root: a directory or s3://bucket/prefix")
    network: Text = setting("pubnet", "--network", "network the ledgers belong to (written to .config.json)")
    ledgers_per_batch: Annotated[int, whole(1)] = setting(1, "--ledgers-per-batch", "ledgers per object")
    batches_per_partition: Annotated[int, whole(1)] = setting(64000, "--batches-per-partition",
                                                              "objects per partition (directory)")
    s3_endpoint_url: Text | None = setting(None, "--s3-endpoint-url", "endpoint of an S3-compatible store")
    s3_region: Text | None = setting(None, "--s3-region", "S3 region")


def cmd_lake_import(args: LakeImportSettings) -> int:
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
    add_command(lake_sub, "import", "build a lake from ledger files (raw or batched XDR, .gz/.zst/.zstd, or base64 "
                "lines)", cmd_lake_import, LakeImportSettings)
