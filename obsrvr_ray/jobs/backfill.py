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

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """`obsrvr-ray backfill` under the name a cluster runs it by."""
    from obsrvr_ray.cli import main as cli_main

    return cli_main(["backfill", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
