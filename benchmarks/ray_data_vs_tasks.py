"""The backfill's two engines on the same inputs, in one run: plain Ray tasks fed by reader actors
(`--engine tasks`, obsrvr_ray.jobs.driver.execute) and the Ray Data pipeline (`--engine data`:
ChunkDatasource read tasks that read, decode and extract a chunk, fused with the TableDatasink
that commits it). Both run the same chunks into fresh Delta tables and commit the same rows.

Inputs: generated sandbox ledgers (default 2,000) and the 320 real protocol-19 testnet ledgers of
../shared/data/ledgers/stellar-go-testnet/ (skipped when absent). Each variant runs `--rounds`
times, alternating, after a warm-up round that is not counted.

    python -m benchmarks.ray_data_vs_tasks [--ledgers 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import ray

from benchmarks.common import RESULTS, machine, sandbox_lake
from obsrvr_ray.backfill_metrics import BackfillMetrics
from obsrvr_ray.backfill_settings import BackfillConfig
from obsrvr_ray.chunks.job import output_shape, resolve
from obsrvr_ray.chunks.plan import plan
from obsrvr_ray.chunks.report import BackfillReport
from obsrvr_ray.jobs.driver import StopSignal, execute, execute_data
from obsrvr_ray.network import resolve_passphrase
from obsrvr_ray.objectstore import LocalStore
from obsrvr_ray.progress import Progress
from obsrvr_ray.sinks.lake_writer import LakeWriter, import_files
from obsrvr_ray.sources.lake_layout import LakeConfig
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.tableset import TableSet

TESTNET = Path(os.environ.get("OBSRVR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) \
    / "ledgers" / "stellar-go-testnet"
ENGINES = {"tasks": execute, "data": execute_data}


def testnet_lake(work_dir: Path) -> Path | None:
    files = sorted(TESTNET.glob("*.xdr"))
    if not files:
        return None
    root = work_dir / "testnet-lake"
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        import_files(files, LakeWriter(LocalStore(root), LakeConfig(network_passphrase=resolve_passphrase("testnet"))))
        (root / ".complete").write_text("ok\n")
    return root


def run_engine(name: str, base: BackfillConfig, out: Path) -> tuple[float, int]:
    """One backfill of `base` into a fresh `out` with the named engine: (seconds, rows committed)."""
    shutil.rmtree(out, ignore_errors=True)
    job = resolve(replace(base, out=str(out), engine=name))
    TableSet(TableLocation(str(out))).ensure(output_shape(job.settings), job.settings.tables)
    units = plan(base.ledgers, {}, job.grid)
    report = BackfillReport("", "", "", ())
    began = time.perf_counter()
    with open(os.devnull, "w") as sink:
        ENGINES[name](job, units, {}, report, BackfillMetrics(), Progress(0, 0, sink), StopSignal())
    seconds = time.perf_counter() - began
    assert not report.unfinished and len(report.results) == len(units), report.unfinished
    return seconds, sum(report.rows().values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ledgers", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "obsrvr-bench")
    args = parser.parse_args()
    inputs = {"generated": (sandbox_lake(args.work_dir, args.ledgers), ((2, args.ledgers + 1),), None)}
    testnet = testnet_lake(args.work_dir)
    if testnet is not None:
        inputs["testnet_p19"] = (testnet, ((1410048, 1410367),), "testnet")
    ray.init(logging_level="WARNING")
    ray.data.DataContext.get_current().enable_progress_bars = False
    results = {}
    for label, (lake, ledgers, network) in inputs.items():
        base = BackfillConfig(source=str(lake), ledgers=ledgers, out="", batch_size=args.batch_size,
                              network=network, tables=("ledgers", "transactions", "token_transfers"))
        count = sum(b - a + 1 for a, b in ledgers)
        timings: dict[str, list[float]] = {name: [] for name in ENGINES}
        rows: dict[str, int] = {}
        for round_ in range(args.rounds + 1):  # round 0 warms workers and imports, and is not counted
            for name in ENGINES:
                # a fresh path each run: the workers of this job keep each output's tables loaded
                out = args.work_dir / f"out-{label}-{name}-{round_}"
                seconds, rows[name] = run_engine(name, base, out)
                shutil.rmtree(out, ignore_errors=True)
                if round_:
                    timings[name].append(seconds)
                print(f"{label:12s} round {round_} {name:5s} {seconds:6.2f} s  {count / seconds:7.1f} ledgers/s",
                      flush=True)
        assert rows["tasks"] == rows["data"], rows
        rate = {k: count / statistics.median(v) for k, v in timings.items()}
        results[label] = {"ledgers": count, "rows": rows["tasks"], "seconds": timings,
                          "ledgers_per_second_median": rate, "data_over_tasks": rate["data"] / rate["tasks"]}
        print(f"{label}: data / tasks = {rate['data'] / rate['tasks']:.2f}", flush=True)
    result = {"benchmark": "ray_data_vs_tasks", "machine": machine(), "batch_size": args.batch_size,
              "rounds": args.rounds, "inputs": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "ray_data_vs_tasks.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
