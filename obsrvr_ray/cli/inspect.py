"""`obsrvr-ray inspect`: summarise output files."""

from __future__ import annotations

import argparse
from typing import Annotated

from obsrvr_ray import exit_codes
from obsrvr_ray.cli.common import add_command
from obsrvr_ray.settings_model import Settings, Text, setting, whole


class InspectSettings(Settings):
    """The flags of `inspect`."""

    files: tuple[Text, ...] = setting(..., "files", "output files (Parquet, JSON lines, CSV)", "positionals")
    rows: Annotated[int, whole(0)] = setting(3, "--rows", "sample rows to show")


def cmd_inspect(args: InspectSettings) -> int:
    from obsrvr_ray.file_summary import describe_file

    for path in args.files:
        print(describe_file(path, rows=args.rows))
    return exit_codes.OK


def register(sub: argparse._SubParsersAction) -> None:
    add_command(sub, "inspect", "summarise output files (Parquet, JSON lines, CSV)", cmd_inspect, InspectSettings)
