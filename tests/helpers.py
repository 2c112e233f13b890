"""Small helpers shared by tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import REPO


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """The real console entry point in a child process (exit code, stdout, stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "obsrvr_ray", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_parquet_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()
