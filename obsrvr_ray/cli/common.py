"""What several commands share: the source flags (a settings model, as every command's flags
are: obsrvr_ray.settings_model), the ledger range they ask for, running a command with the
project's error reporting and exit codes."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated

from obsrvr_ray import exit_codes
from obsrvr_ray.errors import ConfigError, ObsrvrError
from obsrvr_ray.network import resolve_passphrase
from obsrvr_ray.ranges import check_range, check_within, ledger_sequence
from obsrvr_ray.settings_model import Flag, Settings, Text, add_flags, one_of, setting, translated, whole

if TYPE_CHECKING:
    from obsrvr_ray.sources.base import LedgerRecord

SOURCE_HELP = (
    "where ledgers come from, named by its form: a directory (galexie data lake on disk), "
    "s3://bucket/prefix (data lake on S3 or an S3-compatible store), http(s)://… (Stellar RPC "
    "getLedgers), etl:FILE (stellar-etl export_ledger_transaction JSON lines)"
)


Ledger = Annotated[int | None, translated(ledger_sequence)]


class SourceFlags(Settings):
    """The flags of a command that reads ledgers from a source."""

    source: Text = setting(..., "--source", SOURCE_HELP)
    start: Ledger = setting(None, "--start", "first ledger (default: etl file's first)")
    end: Ledger = setting(None, "--end", "last ledger, inclusive; omit to follow new ledgers until interrupted")
    wait_for_end: Flag = setting(False, "--wait-for-end", "wait for ledgers up to --end the source has not closed "
                                 "yet, instead of refusing them", "on")
    network: Text | None = setting(None, "--network", "network name (pubnet, testnet, futurenet, standalone, "
                                   "sandbox) or passphrase; default: what the source declares, else pubnet")
    s3_endpoint_url: Text | None = setting(None, "--s3-endpoint-url",
                                           "endpoint of an S3-compatible store (e.g. http://127.0.0.1:9000)")
    s3_region: Text | None = setting(None, "--s3-region", "S3 region")
    anonymous: Flag | None = setting(None, "--anonymous",
                                     "unsigned S3 requests (default: on for the public AWS bucket only)", "onoff")
    prefetch: Annotated[int, whole(1)] = setting(8, "--prefetch", "objects fetched concurrently from a data lake")
    chain_check: Flag = setting(True, "--no-chain-check", "do not check the header hash chain", "off")
    decoder: Annotated[str, one_of(("fast", "reference"))] = setting(
        "fast", "--decoder", "XDR decoder: ours (default) or stellar-sdk's, the reference it is tested against")


def source_from_args(flags: SourceFlags):
    from obsrvr_ray.sources.open import SourceOptions, open_source

    opts = SourceOptions(
        s3_endpoint_url=flags.s3_endpoint_url,
        s3_region=flags.s3_region,
        anonymous=flags.anonymous,
        network_passphrase=resolve_passphrase(flags.network) if flags.network else None,
        prefetch=flags.prefetch,
    )
    return open_source(flags.source, opts)


def resolve_range(flags: SourceFlags, source) -> tuple[int, int | None]:
    """The range asked for (each ledger checked by SourceFlags), checked against the newest ledger
    the source holds (unless --wait-for-end): refused in one line before anything is read."""
    start, end = flags.start, flags.end
    if start is None:  # from the source's first ledger to its last (an etl file's)
        start = source.earliest()
        if start is None:
            raise ConfigError("--start is required for this source")
        end = source.latest() if end is None else end
    if end is not None:
        check_range(start, end)
        if not flags.wait_for_end:
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


def add_command(subparsers: argparse._SubParsersAction, name: str, helptext: str,
                command: Callable[[Settings], int], model: type[Settings], **kwargs) -> argparse.ArgumentParser:
    """A (sub)command whose flags `model` declares: they are checked by it before `command` runs."""
    parser = subparsers.add_parser(name, help=helptext, **kwargs)
    add_flags(parser, model)
    parser.set_defaults(func=lambda namespace: command(model.from_flags(namespace)))
    return parser


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


@contextlib.contextmanager
def interrupted_by_sigterm() -> Iterator[None]:
    """SIGTERM (systemd, Kubernetes, `kill`) stops the block as SIGINT does: a KeyboardInterrupt,
    so a following command writes what it holds and prints its summary on either. SIGINT keeps
    the disposition the command started with (ignored in a shell's background job)."""
    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_for_stop() -> None:
    """Block until SIGINT or SIGTERM: a foreground server's command ends on either, then stops
    its server."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
