"""Helpers of the backfill tests: run the job as a real process, read its output back, find the
Ray worker processes of the session cluster (by walking /proc: only our cluster's children)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from obsrvr_ray.schema import TOKEN_TRANSFERS
from tests.conftest import REPO, RayHead


def backfill_command(head: RayHead, *args: str) -> list[str]:
    return [sys.executable, "-m", "obsrvr_ray.jobs.backfill", "--address", head.address, *args]


def run_backfill(head: RayHead, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(backfill_command(head, *args), cwd=REPO, env=head.env, capture_output=True, text=True,
                          timeout=timeout)


def start_backfill(head: RayHead, *args: str, log: Path) -> subprocess.Popen:
    """The driver as a child process of ours (so a signal can be sent to it), output to `log`."""
    return subprocess.Popen(backfill_command(head, *args), cwd=REPO, env=head.env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


def committed(out: Path) -> list[str]:
    manifest = out / "_backfill" / "manifest"
    return sorted(p.name for p in manifest.glob("*.json")) if manifest.exists() else []


def wait_for(predicate, timeout: float = 120, what: str = "condition", interval: float = 0.02):
    """Poll until `predicate` returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout}s")
        time.sleep(interval)
    return value


def read_transfers(out: Path, fmt: str = "parquet") -> pa.Table:
    """The token_transfers dataset as readers see it (hive partitions become columns), in the
    export's columns and a stable order."""
    table = ds.dataset(out / fmt / "token_transfers", format=fmt, partitioning="hive").to_table()
    return sort_transfers(table.select(TOKEN_TRANSFERS.names).cast(TOKEN_TRANSFERS))


def sort_transfers(table: pa.Table) -> pa.Table:
    return table.sort_by([("ledger_sequence", "ascending"), ("event_index", "ascending")])


def file_tree(out: Path) -> dict[str, str]:
    """Every file of the output and its SHA-256, but the manifest entries (they hold commit
    times and attempt ids, which differ between runs by design)."""
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not p.relative_to(out).as_posix().startswith("_backfill/manifest/")
    }


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def process_title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill_worker(head: RayHead, title: str, sig: int = signal.SIGKILL) -> int | None:
    """SIGKILL a worker process of the session cluster whose title (Ray's `ray::Name.method`)
    starts with `title`; its pid, or None when none runs right now."""
    for pid in descendants(head.pid):
        if process_title(pid).startswith(title):
            os.kill(pid, sig)
            return pid
    return None
