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


def reference_rows(ledgers: dict[int, bytes], passphrase: str) -> dict[int, list[dict]]:
    """Each ledger's token_transfers rows by the rules on stellar-sdk's objects: what a live app
    must publish and serve for it."""
    from obsrvr_ray.ledger.decode import decode_ledger
    from obsrvr_ray.ttp.extract import token_transfer_rows

    return {seq: token_transfer_rows(decode_ledger(data, passphrase, decoder="reference"), passphrase)[0]
            for seq, data in ledgers.items()}
