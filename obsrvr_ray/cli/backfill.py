"""`obsrvr-ray backfill`: token transfers (and ledgers, transactions) for any ledger range, on a
Ray cluster, into a partitioned, exactly-once dataset; `python -m obsrvr_ray.jobs.backfill` is
the same command (what `ray job submit` runs)."""

from __future__ import annotations

import argparse

from obsrvr_ray.config import BackfillConfig, add_arguments, from_arguments
from obsrvr_ray.jobs import backfill as job
from obsrvr_ray.logs import setup_json_logging

SUMMARY = "backfill a ledger range on Ray into a partitioned, exactly-once dataset (resumable)"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `backfill` on the project's command line."""
    parser = subparsers.add_parser("backfill", help=SUMMARY, description=job.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=cmd_backfill)
    return parser


def cmd_backfill(args: argparse.Namespace) -> int:
    config = from_arguments(args)
    setup_json_logging(config.log_level)
    check_source(config)
    from obsrvr_ray.jobs.driver import run  # imports Ray: only once the settings are known to be good

    return run(config)


def check_source(config: BackfillConfig) -> None:
    """The source exists and holds the requested ledgers (or, with --wait-for-end, until it
    does): refused in one line before Ray starts or anything is planned or written."""
    from obsrvr_ray.chunks.job import source_options
    from obsrvr_ray.sources.horizon import PatienceNotice, check_reach
    from obsrvr_ray.sources.open import open_source

    source = open_source(config.source, source_options(config))
    try:
        check_reach(source, config.ranges, wait=config.wait_for_end, patience=config.source_patience,
                    notice=PatienceNotice("obsrvr-ray backfill"))
    finally:
        source.close()


