"""Small helpers shared by tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import REPO


def run_cli(*args: str, timeout: float = 600, package: str = "obsrvr_ray") -> subprocess.CompletedProcess:
    """The real console entry point (`obsrvr-ray`, or `obsrvr-sandbox` with package="obsrvr_sandbox")
    in a child process (exit code, stdout, stderr)."""
    return subprocess.run(
        [sys.executable, "-m", package, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_parquet_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()
