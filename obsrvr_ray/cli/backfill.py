"""`obsrvr-ray backfill`: token transfers (and ledgers, transactions) for any ledger range, on a
Ray cluster, into a partitioned, exactly-once dataset; `python -m obsrvr_ray.jobs.backfill` is
the same command (what `ray job submit` runs)."""

from __future__ import annotations

import argparse

from obsrvr_ray.backfill_settings import add_arguments, from_arguments
from obsrvr_ray.jobs import backfill as backfill_job
from obsrvr_ray.logs import setup_json_logging

SUMMARY = "backfill a ledger range on Ray into a partitioned, exactly-once dataset (resumable)"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `backfill` on the project's command line."""
    parser = subparsers.add_parser("backfill", help=SUMMARY, description=backfill_job.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=cmd_backfill)
    return parser


def cmd_backfill(args: argparse.Namespace) -> int:
    config = from_arguments(args)
    setup_json_logging(config.log_level)
    from obsrvr_ray.chunks.job import resolve

    job = resolve(config)  # the source is checked to hold the range before Ray starts or anything is written
    from obsrvr_ray.jobs.driver import run  # imports Ray: only once the settings are known to be good

    return run(job)
