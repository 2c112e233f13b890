"""`obsrvr-ray backfill`: token transfers (and ledgers, transactions) for any ledger range, on
a Ray cluster, into a partitioned, exactly-once Parquet / JSON lines / CSV output.

The same module is what a cluster runs:

    ray job submit --working-dir . -- python -m obsrvr_ray.jobs.backfill --source ... --start N --end M --out ...

It joins the cluster it runs on (or --ray-address, RAY_ADDRESS, the latest `ray start` cluster on
this machine) and starts a local one when there is none. Rerunning the same command after a
crash or a stop resumes: committed chunks are skipped. Exit codes (obsrvr_ray.exit_codes): 0 done,
1 failures (see the summary), 2 bad settings, 130/143 stopped by SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from obsrvr_ray.backfill_settings import add_arguments, from_arguments
from obsrvr_ray.logs import setup_json_logging

SUMMARY = "backfill a ledger range on Ray into a partitioned, exactly-once dataset (resumable)"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `backfill` on the project's command line."""
    parser = subparsers.add_parser("backfill", help=SUMMARY, description=__doc__,
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


def main(argv: Sequence[str] | None = None) -> int:
    """`obsrvr-ray backfill` under the name a cluster runs it by (the CLI's error handling and
    exit codes)."""
    from obsrvr_ray.cli import main as cli_main

    return cli_main(["backfill", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
