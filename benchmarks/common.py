"""What the benchmarks share: the generated lake they read and the description of the machine."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from obsrvr_ray.network import SANDBOX
from obsrvr_ray.objectstore import LocalStore
from obsrvr_ray.sinks.lake_writer import LakeWriter
from obsrvr_ray.sources.lake_layout import LakeConfig

RESULTS = Path(__file__).resolve().parent / "results"


def sandbox_lake(work_dir: Path, ledgers: int) -> Path:
    """A galexie-layout lake of `ledgers` sandbox ledgers from 2 (one per object, as the public
    pubnet lake), generated once and reused: the generator is deterministic."""
    root = work_dir / f"sandbox-lake-{ledgers}"
    done = root / ".complete"
    if not done.exists():
        from obsrvr_sandbox.generator import generate_ledgers

        writer = LakeWriter(LocalStore(root), LakeConfig(network_passphrase=SANDBOX))
        writer.write_config()
        writer.write(generate_ledgers(ledgers))
        done.write_text("ok\n")
    return root


def process_tree(root: int) -> list[int]:
    """`root` and every process below it, from /proc (Linux only)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, stack = [root], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


def machine() -> dict:
    """Enough to compare results between machines."""
    import pyarrow
    import ray

    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "pyarrow": pyarrow.__version__,
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                                 cwd=Path(__file__).parent).stdout.strip(),
    }
