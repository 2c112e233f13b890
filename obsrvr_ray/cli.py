"""`obsrvr-ray`: one command line for every job of the project."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from obsrvr_ray.errors import ConfigError, ObsrvrError
from obsrvr_ray.network import network_name, resolve_passphrase
from obsrvr_ray.ranges import check_range, check_within, ledger_number

if TYPE_CHECKING:
    from obsrvr_ray.sources.base import LedgerRecord

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

SOURCE_HELP = (
    "where ledgers come from, named by its form: a directory (galexie data lake on disk), "
    "s3://bucket/prefix (data lake on S3 or an S3-compatible store), http(s)://… (Stellar RPC "
    "getLedgers), etl:FILE (stellar-etl export_ledger_transaction JSON lines)"
)


def add_source_args(p: argparse.ArgumentParser, *, start_required: bool = False) -> None:
    p.add_argument("--source", required=True, help=SOURCE_HELP)
    p.add_argument("--start", required=start_required, help="first ledger (default: etl file's first)")
    p.add_argument("--end", help="last ledger, inclusive; omit to follow new ledgers until interrupted")
    p.add_argument("--wait-for-end", action="store_true",
                   help="wait for ledgers up to --end the source has not closed yet, instead of refusing them")
    p.add_argument("--network", help="network name (pubnet, testnet, futurenet, standalone, sandbox) or "
                   "passphrase; default: what the source declares, else pubnet")
    p.add_argument("--s3-endpoint-url", help="endpoint of an S3-compatible store (e.g. http://127.0.0.1:9000)")
    p.add_argument("--s3-region", help="S3 region")
    p.add_argument("--anonymous", action=argparse.BooleanOptionalAction, default=None,
                   help="unsigned S3 requests (default: on for the public AWS bucket only)")
    p.add_argument("--prefetch", type=int, default=8, help="objects fetched concurrently from a data lake")
    p.add_argument("--no-chain-check", action="store_true", help="do not check the header hash chain")
    p.add_argument("--decoder", default="fast", choices=["fast", "reference"],
                   help="XDR decoder: ours (default) or stellar-sdk's, the reference it is tested against")


def source_from_args(args: argparse.Namespace):
    from obsrvr_ray.sources.open import SourceOptions, open_source

    opts = SourceOptions(
        s3_endpoint_url=args.s3_endpoint_url,
        s3_region=args.s3_region,
        anonymous=args.anonymous,
        network_passphrase=resolve_passphrase(args.network) if args.network else None,
        prefetch=args.prefetch,
    )
    return open_source(args.source, opts)


def resolve_range(args: argparse.Namespace, source) -> tuple[int, int | None]:
    """The range asked for, checked as every command checks one, and against the newest ledger
    the source holds (unless --wait-for-end): refused in one line before anything is read."""
    start = None if args.start is None else ledger_number("--start", args.start)
    end = None if args.end is None else ledger_number("--end", args.end)
    if start is None:  # from the source's first ledger to its last (an etl file's)
        start = source.earliest()
        if start is None:
            raise ConfigError("--start is required for this source")
        end = source.latest() if end is None else end
    if end is not None:
        check_range(start, end)
        if not args.wait_for_end:
            check_within(((start, end),), source.latest(), source.description)
    return start, end


def records_until(source, start: int, end: int) -> Iterator[LedgerRecord]:
    """[start, end] of the source, waiting for the ledgers it has not closed yet (--wait-for-end):
    what it holds is read as a range, the rest followed as it comes."""
    latest = source.latest()
    if latest is not None and latest >= end:
        yield from source.records(start, end)
        return
    if latest is not None and latest >= start:
        yield from source.records(start, latest)
        start = latest + 1
    for record in source.records(start, None):
        if record.sequence is None or record.sequence <= end:
            yield record
        if record.sequence is not None and record.sequence >= end:  # asking for one more would wait for it
            return


def resolve_network(args: argparse.Namespace, source) -> str:
    """Explicit --network wins; else the source's declaration; else pubnet."""
    if args.network:
        return resolve_passphrase(args.network)
    return source.network_passphrase or resolve_passphrase("pubnet")


def split_list(values: list[str] | None) -> list[str]:
    """Repeatable, comma-separated option values -> one flat list."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def cmd_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from obsrvr_ray.objectstore import S3Options
    from obsrvr_ray.pipeline import ExtractOptions, RunReport, TableWriter, build_rows, stream_ledgers
    from obsrvr_ray.ttp.filters import EventFilter

    source = source_from_args(args)
    try:
        start, end = resolve_range(args, source)
        passphrase = resolve_network(args, source)
        report = RunReport(source=source.description, start=start, end=end, network=network_name(passphrase))
        follow = end is None
        s3 = S3Options(endpoint_url=args.s3_endpoint_url, region=args.s3_region)
        table = args.table.replace("-", "_")
        event_filter = EventFilter.of(split_list(args.event_types), split_list(args.assets),
                                      split_list(args.accounts))
        options = ExtractOptions(passphrase, events_from=args.events_from, verify=args.verify, filter=event_filter,
                                 decoder=args.decoder)
        writer = TableWriter(table, args.out, args.format, compression=args.compression, follow=follow,
                             flush_every=args.flush_every, report=report, s3=s3,
                             row_filter=event_filter if table == "token_transfers" else None)
        bar = tqdm(total=None if follow else end - start + 1, unit="ledger", file=sys.stderr,
                   disable=None, dynamic_ncols=True, desc=f"export {args.table}")
        interrupted = False
        try:
            records = records_until(source, start, end) if args.wait_for_end and end is not None else \
                source.records(start, end)
            for ledger in stream_ledgers(records, passphrase, report,
                                         chain_check=not args.no_chain_check,
                                         on_record=lambda _seq: bar.update(1), decoder=args.decoder):
                writer.add(ledger, build_rows(table, ledger, options, report))
                bar.set_postfix(rows=report.rows, failed=len(report.failures), refresh=False)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
        writer.flush()
        import time as _t

        report.finished = _t.monotonic()
        print(report.summary(f"export {args.table}"), flush=True)
        if interrupted:
            # Every part is written whole and the summary printed: end now. The interrupt may have
            # landed inside a request to the source, whose connection pool or worker thread could
            # then hold the normal shutdown (closing, joining threads) indefinitely.
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
    finally:
        source.close()
    return EXIT_OK if report.ok else EXIT_FAILURES


def cmd_lake_import(args: argparse.Namespace) -> int:
    from obsrvr_ray.objectstore import S3Options, open_store
    from obsrvr_ray.sinks.lake import LakeWriter, import_files
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
    return EXIT_OK


def cmd_lake_generate(args: argparse.Namespace) -> int:
    from obsrvr_ray.network import SANDBOX
    from obsrvr_ray.objectstore import S3Options, open_store
    from obsrvr_ray.sandbox import generate_ledgers
    from obsrvr_ray.sinks.lake import LakeWriter
    from obsrvr_ray.sources.lake_layout import LakeConfig

    config = LakeConfig(network_passphrase=SANDBOX, ledgers_per_batch=args.ledgers_per_batch,
                        batches_per_partition=args.batches_per_partition)
    store = open_store(args.out, S3Options(endpoint_url=args.s3_endpoint_url, region=args.s3_region))
    writer = LakeWriter(store, config)
    writer.write_config()
    report = writer.write(generate_ledgers(args.ledgers, start=ledger_number("--start", args.start), seed=args.seed,
                                           txs_per_ledger=args.txs_per_ledger))
    print(f"generated {report.ledgers} sandbox ledgers ({report.first}…{report.last}) into {report.objects} "
          f"objects at {store.url} (network sandbox: {SANDBOX!r})")
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    from obsrvr_ray.inspect import describe_file

    for path in args.files:
        print(describe_file(path, rows=args.rows))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obsrvr-ray", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    exp = sub.add_parser("export", help="export a table for a ledger range to one file")
    exp.add_argument("table", choices=["ledgers", "transactions", "token-transfers"])
    add_source_args(exp)
    exp.add_argument("--out", required=True, help="output file (a directory when following), local or s3://")
    exp.add_argument("--format", default="parquet", choices=["parquet", "jsonl", "csv"])
    exp.add_argument("--compression", default="zstd", help="Parquet compression: snappy, gzip, lz4, zstd, brotli, none")
    exp.add_argument("--flush-every", type=int, default=100, help="when following: ledgers per part file")
    exp.add_argument("--events-from", default="auto", choices=["auto", "core", "operations"],
                     help="token transfers: events core emitted (TransactionMetaV4, what stellar-etl reads), "
                     "events derived from operations, or core's when present (default)")
    exp.add_argument("--verify", action="store_true",
                     help="token transfers: check derived events, core events and balance changes agree")
    exp.add_argument("--event-types", action="append", help="token transfers: keep these types "
                     "(transfer, mint, burn, clawback, fee); repeatable or comma-separated")
    exp.add_argument("--assets", action="append", help="token transfers: keep these assets "
                     "(native, CODE:ISSUER, CODE, or a token contract C...)")
    exp.add_argument("--accounts", action="append", help="token transfers: keep events from or to these addresses")
    exp.set_defaults(func=cmd_export)

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
    gen = lake_sub.add_parser("generate", help="build a lake of sandbox ledgers (real signed transactions, "
                              "sandbox network passphrase)")
    gen.add_argument("--out", required=True, help="lake root: a directory or s3://bucket/prefix")
    gen.add_argument("--ledgers", type=int, default=100, help="how many consecutive ledgers")
    gen.add_argument("--start", default=2, help="first ledger sequence")
    gen.add_argument("--seed", type=int, default=1, help="same seed, same ledgers")
    gen.add_argument("--txs-per-ledger", type=int, default=12)
    gen.add_argument("--ledgers-per-batch", type=int, default=1)
    gen.add_argument("--batches-per-partition", type=int, default=64000)
    gen.add_argument("--s3-endpoint-url")
    gen.add_argument("--s3-region")
    gen.set_defaults(func=cmd_lake_generate)

    ins = sub.add_parser("inspect", help="summarise output files (Parquet, JSON lines, CSV)")
    ins.add_argument("files", nargs="+")
    ins.add_argument("--rows", type=int, default=3, help="sample rows to show")
    ins.set_defaults(func=cmd_inspect)

    from obsrvr_ray.jobs.backfill import add_parser as add_backfill_parser
    from obsrvr_ray.jobs.live import add_parsers as add_live_parsers
    from obsrvr_ray.security.cli import add_keys_parser
    from obsrvr_ray.table.cli import add_table_parser

    add_backfill_parser(sub)
    add_live_parsers(sub)
    add_keys_parser(sub)
    add_table_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"obsrvr-ray: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ObsrvrError as exc:
        print(f"obsrvr-ray: {exc}", file=sys.stderr)
        return EXIT_FAILURES


if __name__ == "__main__":
    sys.exit(main())
