"""Helpers of the backfill tests: run the job as a real process, read its output back, find the
Ray worker processes of the session cluster (by walking /proc: only our cluster's children)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa

from obsrvr_ray.query import TableReader
from obsrvr_ray.ranges import range_key
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.tableset import TableSet
from tests.conftest import REPO, RayHead


def backfill_command(head: RayHead, *args: str) -> list[str]:
    return [sys.executable, "-m", "obsrvr_ray.jobs.backfill", "--ray-address", head.address, *args]


def run_backfill(head: RayHead, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(backfill_command(head, *args), cwd=REPO, env=head.env, capture_output=True, text=True,
                          timeout=timeout)


def start_backfill(head: RayHead, *args: str, log: Path) -> subprocess.Popen:
    """The driver as a child process of ours (so a signal can be sent to it), output to `log`."""
    return subprocess.Popen(backfill_command(head, *args), cwd=REPO, env=head.env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


def committed(out: Path) -> list[str]:
    """The committed chunk generations (`start-end.gN`), from the output's chunks table."""
    if not (out / "chunks" / "_delta_log").exists():
        return []
    tables = TableSet(TableLocation(str(out)))
    return sorted(f"{range_key(chunk)}.g{gen}" for chunk, gen in tables.committed().items())


def wait_for(predicate, timeout: float = 120, what: str = "condition", interval: float = 0.02):
    """Poll until `predicate` returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout}s")
        time.sleep(interval)
    return value


def read_transfers(out: Path) -> pa.Table:
    """The token_transfers table as readers see it (its latest snapshot), in the export's columns
    and a stable order."""
    return sort_transfers(TableReader(str(out)).read("token_transfers"))


def sort_transfers(table: pa.Table) -> pa.Table:
    return table.sort_by([("ledger_sequence", "ascending"), ("event_index", "ascending")])


def table_contents(out: Path) -> dict[str, list[dict]]:
    """What every reader sees: each table's rows at its latest snapshot, in a stable order (the
    chunks table without its commit times, which differ between runs by design)."""
    tables = TableSet(TableLocation(str(out)))
    names = [p.parent.relative_to(out).as_posix() for p in sorted(out.rglob("_delta_log"))]
    contents = {}
    for name in names:
        rows = tables.read(name)
        rows = rows.drop_columns([c for c in ("committed_at",) if c in rows.column_names])
        keys = [c for c in rows.column_names if not pa.types.is_list(rows.schema.field(c).type)]
        contents[name] = rows.sort_by([(c, "ascending") for c in keys]).to_pylist()
    return contents


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
