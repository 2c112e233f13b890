"""What several commands share: the source flags, the ledger range they ask for, running a
command with the project's error reporting and exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from obsrvr_ray import exit_codes
from obsrvr_ray.errors import ConfigError, ObsrvrError
from obsrvr_ray.network import resolve_passphrase
from obsrvr_ray.ranges import check_range, check_within, ledger_number

if TYPE_CHECKING:
    from obsrvr_ray.sources.base import LedgerRecord

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


def split_list(values: list[str] | None) -> list[str]:
    """Repeatable, comma-separated option values -> one flat list."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def run(command: Callable[[argparse.Namespace], int], args: argparse.Namespace, prog: str) -> int:
    """A command, its refusals and failures told in one line: bad settings exit USAGE, a failure
    of ours FAILURES (a bug raises, with its traceback)."""
    try:
        return command(args)
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    except ObsrvrError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exit_codes.FAILURES
