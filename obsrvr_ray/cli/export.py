"""`obsrvr-ray export`: one table for a ledger range (or following new ledgers) into one file."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Annotated

from obsrvr_ray import exit_codes
from obsrvr_ray.cli.common import (
    SourceFlags,
    add_command,
    interrupted_by_sigterm,
    records_until,
    resolve_range,
    source_from_args,
)
from obsrvr_ray.network import network_name, resolve_network
from obsrvr_ray.schema import TRANSFERS_TABLE
from obsrvr_ray.settings_model import Flag, Text, Words, one_of, setting, some_of, whole
from obsrvr_ray.sinks.files import FORMATS, PARQUET_COMPRESSIONS
from obsrvr_ray.ttp.events import KINDS
from obsrvr_ray.ttp.extract import EVENT_SOURCES

EXPORTED = ("ledgers", "transactions", "token-transfers")


class ExportSettings(SourceFlags):
    """The flags of `export`."""

    table: Annotated[str, one_of(EXPORTED)] = setting(..., "table", f"the table: {', '.join(EXPORTED)}",
                                                      "positional")
    out: Text = setting(..., "--out", "output file (a directory when following), local or s3://")
    format: Annotated[str, one_of(FORMATS)] = setting("parquet", "--format", f"file format: {', '.join(FORMATS)}")
    compression: Annotated[str, one_of(PARQUET_COMPRESSIONS)] = setting(
        "zstd", "--compression", f"Parquet compression: {', '.join(PARQUET_COMPRESSIONS)}")
    flush_every: Annotated[int, whole(1)] = setting(100, "--flush-every", "when following: ledgers per part file")
    events_from: Annotated[str, one_of(EVENT_SOURCES)] = setting(
        "auto", "--events-from", "token transfers: events core emitted (TransactionMetaV4, what stellar-etl reads), "
        "events derived from operations, or core's when present (default)")
    verify: Flag = setting(False, "--verify",
                           "token transfers: check derived events, core events and balance changes agree", "on")
    event_types: Annotated[tuple[str, ...], some_of(KINDS)] = setting(
        (), "--event-types", f"token transfers: keep these types ({', '.join(KINDS)}); repeatable or "
        "comma-separated", "many")
    assets: Words = setting((), "--assets", "token transfers: keep these assets "
                            "(native, CODE:ISSUER, CODE, or a token contract C...)", "many")
    accounts: Words = setting((), "--accounts", "token transfers: keep events from or to these addresses", "many")


def cmd_export(flags: ExportSettings) -> int:
    from tqdm import tqdm

    from obsrvr_ray.objectstore import S3Options
    from obsrvr_ray.pipeline import (
        ExtractOptions,
        RunReport,
        TableWriter,
        build_rows,
        reads_from_bytes,
        record_transfers,
        stream_ledgers,
        transfers_reader,
    )
    from obsrvr_ray.ttp.filters import EventFilter
    from obsrvr_ray.ttp.transfer_table import TransferTable

    source = source_from_args(flags)
    try:
        start, end = resolve_range(flags, source)
        passphrase = resolve_network(flags.network, source.network_passphrase)
        report = RunReport(source=source.description, start=start, end=end, network=network_name(passphrase))
        follow = end is None
        s3 = S3Options(endpoint_url=flags.s3_endpoint_url, region=flags.s3_region)
        table = flags.table.replace("-", "_")
        event_filter = EventFilter.of(flags.event_types, flags.assets, flags.accounts)
        options = ExtractOptions(passphrase, events_from=flags.events_from, verify=flags.verify, filter=event_filter,
                                 decoder=flags.decoder)
        # token transfers straight from the bytes (compiled for TransactionMetaV4 ledgers)
        transfers = TransferTable(passphrase, events_from=flags.events_from) if (
            table == TRANSFERS_TABLE and reads_from_bytes(options)) else None
        writer = TableWriter(table, flags.out, flags.format, compression=flags.compression, follow=follow,
                             flush_every=flags.flush_every, report=report, s3=s3,
                             row_filter=event_filter if table == TRANSFERS_TABLE else None, transfers=transfers)
        bar = tqdm(total=None if follow else end - start + 1, unit="ledger", file=sys.stderr,
                   disable=None, dynamic_ncols=True, desc=f"export {flags.table}")
        interrupted = False
        try:
            records = records_until(source, start, end) if flags.wait_for_end and end is not None else \
                source.records(start, end)
            read = transfers_reader(transfers, options) if transfers is not None else None
            with interrupted_by_sigterm():
                for found in stream_ledgers(records, passphrase, report, chain_check=flags.chain_check,
                                            on_record=lambda _seq: bar.update(1), decoder=flags.decoder, read=read):
                    if transfers is not None:
                        record_transfers(report, found)
                        writer.add(found.sequence)
                    else:
                        writer.add(found.sequence, build_rows(table, found, options, report))
                    bar.set_postfix(rows=report.rows, failed=len(report.failures), refresh=False)
        except KeyboardInterrupt:  # SIGINT, or SIGTERM (interrupted_by_sigterm)
            interrupted = True
        finally:
            bar.close()
        writer.flush()
        import time as _t

        report.finished = _t.monotonic()
        print(report.summary(f"export {flags.table}"), flush=True)
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
    add_command(sub, "export", "export a table for a ledger range to one file", cmd_export, ExportSettings)
