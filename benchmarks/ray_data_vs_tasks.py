"""Which runs a backfill's extraction and writes faster here: Ray Data `map_batches`, or plain
Ray tasks fed by reader actors (what obsrvr_ray.jobs.driver does)?

Both variants share everything but the orchestration: the same ChunkReader / read_unit, the same
process_unit (decode, extract, write, commit), the same chunks, the same cluster. Each variant
runs `--rounds` times, alternating, each into a fresh output; the cluster is warmed up first.

    python benchmarks/ray_data_vs_tasks.py [--ledgers 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import ray

from benchmarks.common import RESULTS, machine, sandbox_lake
from obsrvr_ray.chunks.job import resolve
from obsrvr_ray.chunks.plan import plan
from obsrvr_ray.chunks.process import process_unit
from obsrvr_ray.chunks.raw import read_unit
from obsrvr_ray.chunks.report import BackfillReport
from obsrvr_ray.config import BackfillConfig
from obsrvr_ray.jobs.driver import StopSignal, execute
from obsrvr_ray.metrics import BackfillMetrics
from obsrvr_ray.progress import Progress
from obsrvr_ray.sources.open import open_source


def with_tasks(job, units) -> None:
    report = BackfillReport("", "", "", ())
    with open("/dev/null", "w") as sink:
        execute(job, units, {}, report, BackfillMetrics(), Progress(0, 0, sink), StopSignal())
    assert len(report.results) == len(units), report.unfinished


def with_ray_data(job, units) -> None:
    spec, options, readers = job.config.source, job.source_options, job.config.concurrent_readers

    class Reader:
        def __init__(self) -> None:
            self.source = open_source(spec, options)

        def __call__(self, batch: pa.Table) -> pa.Table:
            (i,) = batch["unit"].to_pylist()
            raw = read_unit(self.source, units[i])
            return raw.append_column("unit", pa.array([i] * raw.num_rows, pa.int64()))

    def commit(batch: pa.Table) -> pa.Table:
        done = []
        for i in sorted(set(batch["unit"].to_pylist())):
            raw = batch.filter(pc.equal(batch["unit"], i)).drop_columns(["unit"])
            done.append({"unit": i, "ledgers": process_unit(units[i], raw, job.settings).ledgers})
        return pa.Table.from_pylist(done)

    ds = ray.data.from_items([{"unit": i} for i in range(len(units))], override_num_blocks=len(units))
    ds = ds.map_batches(Reader, batch_size=1, batch_format="pyarrow", num_cpus=0.01,
                        compute=ray.data.ActorPoolStrategy(size=readers))
    ds = ds.map_batches(commit, batch_size=None, batch_format="pyarrow", num_cpus=1)
    assert sum(row["ledgers"] for row in ds.iter_rows()) == sum(u.ledgers for u in units)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ledgers", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "obsrvr-bench")
    args = parser.parse_args()
    lake = sandbox_lake(args.work_dir, args.ledgers)
    ray.init(logging_level="WARNING")
    ray.data.DataContext.get_current().enable_progress_bars = False
    base = BackfillConfig(source=str(lake), ledgers=((2, args.ledgers + 1),), out="", batch_size=args.batch_size,
                          concurrent_readers=args.readers)
    timings: dict[str, list[float]] = {"tasks": [], "ray_data": []}
    variants = {"tasks": with_tasks, "ray_data": with_ray_data}
    for round_ in range(args.rounds + 1):  # round 0 warms workers and imports, and is not counted
        for name, run in variants.items():
            out = args.work_dir / f"out-{name}"
            shutil.rmtree(out, ignore_errors=True)
            job = resolve(replace(base, out=str(out)))
            units = plan(base.ledgers, {}, job.grid)
            began = time.perf_counter()
            run(job, units)
            seconds = time.perf_counter() - began
            if round_:
                timings[name].append(seconds)
            print(f"round {round_} {name:9s} {seconds:6.2f} s  {args.ledgers / seconds:7.1f} ledgers/s", flush=True)
    result = {
        "benchmark": "ray_data_vs_tasks",
        "machine": machine(),
        "ledgers": args.ledgers,
        "batch_size": args.batch_size,
        "readers": args.readers,
        "seconds": timings,
        "ledgers_per_second_median": {k: args.ledgers / statistics.median(v) for k, v in timings.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "ray_data_vs_tasks.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["ledgers_per_second_median"], indent=2), f"\nwritten to {path}")


if __name__ == "__main__":
    main()
