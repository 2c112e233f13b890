"""`obsrvr-ray export`: one table for a ledger range (or following new ledgers) into one file."""

from __future__ import annotations

import argparse
import os
import sys

from obsrvr_ray import exit_codes
from obsrvr_ray.cli.common import add_source_args, records_until, resolve_range, source_from_args, split_list
from obsrvr_ray.network import network_name, resolve_network
from obsrvr_ray.schema import TRANSFERS_TABLE


def cmd_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from obsrvr_ray.objectstore import S3Options
    from obsrvr_ray.pipeline import ExtractOptions, RunReport, TableWriter, build_rows, stream_ledgers
    from obsrvr_ray.ttp.filters import EventFilter

    source = source_from_args(args)
    try:
        start, end = resolve_range(args, source)
        passphrase = resolve_network(args.network, source.network_passphrase)
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
                             row_filter=event_filter if table == TRANSFERS_TABLE else None)
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
            os._exit(exit_codes.INTERRUPTED)
    finally:
        source.close()
    return exit_codes.OK if report.ok else exit_codes.FAILURES


def register(sub: argparse._SubParsersAction) -> None:
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

