"""`obsrvr-ray inspect`: summarise output files."""

from __future__ import annotations

import argparse

from obsrvr_ray import exit_codes


def cmd_inspect(args: argparse.Namespace) -> int:
    from obsrvr_ray.file_summary import describe_file

    for path in args.files:
        print(describe_file(path, rows=args.rows))
    return exit_codes.OK


def register(sub: argparse._SubParsersAction) -> None:
    ins = sub.add_parser("inspect", help="summarise output files (Parquet, JSON lines, CSV)")
    ins.add_argument("files", nargs="+")
    ins.add_argument("--rows", type=int, default=3, help="sample rows to show")
    ins.set_defaults(func=cmd_inspect)

