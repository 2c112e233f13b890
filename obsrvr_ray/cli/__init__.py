"""`obsrvr-ray`: one command line for every job of the project.

Each command group is a module with a `register(subparsers)`, in this package except the
backfill, whose module is also what clusters run (obsrvr_ray.jobs.backfill); COMMANDS lists them,
the one place a command is added. Exit codes: obsrvr_ray.exit_codes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module

from obsrvr_ray.cli.common import run

COMMANDS = ("obsrvr_ray.cli.export", "obsrvr_ray.jobs.backfill", "obsrvr_ray.cli.lake", "obsrvr_ray.cli.inspect",
            "obsrvr_ray.cli.serve", "obsrvr_ray.cli.keys", "obsrvr_ray.cli.table",
            "obsrvr_ray.cli.certs")  # cli.serve also registers `rpc`


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obsrvr-ray", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.func, args, "obsrvr-ray")


if __name__ == "__main__":
    sys.exit(main())
