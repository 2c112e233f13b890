"""Backfills over 1, 2 and 3 local Ray nodes: what spreading a backfill over nodes costs per chunk.

The machine has 2 cores, so this measures overhead and correctness, not speed-up. Every
configuration has the same 2 CPUs, spread differently, on a `ray.cluster_utils.Cluster` this
process starts (each node its own raylet and object store, its own temp dir, auth off):

  1 node    the head, 2 CPUs
  2 nodes   the head, 1 CPU + a worker, 1 CPU
  3 nodes   the head without CPUs (the driver and reader actors run there, as on KubeRay) + two
            workers, 1 CPU each

Against each, the real job (`python -m obsrvr_ray.jobs.backfill --ray-address ...`) runs over a short
and a long range of the same generated lake (one ledger per object, as the public pubnet lake),
each run in a fresh output. Measured:

* per chunk, from the job's `chunk_committed` log lines: where it was read and committed, the
  CPU seconds of its read and of its commit task (decode, extract, write, commit: the work), its
  bytes, whether the object store carried it from one node to another;
* the CPU seconds (user + system, from /proc, sampled every 0.2 s) of every process of the
  cluster and of the driver, by kind: worker processes (reads and commit tasks, and Ray's work in
  them), raylets (scheduling, object transfer), the GCS, the driver, Ray's other processes;
* the marginal cost of a chunk: (long run - short run) / (chunks of the long - of the short), so
  that fixed costs (starting worker processes, imports, connecting) cancel out. The overhead of a
  chunk is its marginal CPU seconds outside its own read and commit work; its share is that over
  the work;
* object transfer alone: a task on one node reads a chunk-sized object made on the same node or
  on another one (15 times each, median), on the 3-node cluster.

    python -m benchmarks.nodes_bench [--short 500] [--long 2000] [--batch-size 64]

Results (with the machine's description) go to benchmarks/results/nodes_bench.json.
`python -m benchmarks.nodes_bench plan` then replays the measured costs at 10, 100 and 1,000
nodes for the full-history plan (docs/full-history.md) and adds it to the same file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import RESULTS, machine, process_tree, sandbox_lake

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {1: [2], 2: [1, 1], 3: [0, 1, 1]}  # CPUs per node, head first
OBJECT_STORE = 300 * 2**20  # per node
RESULT_FILE = RESULTS / "nodes_bench.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """Several Ray nodes on this machine, started by this process."""

    def __init__(self, cpus: list[int]) -> None:
        import ray
        from ray.cluster_utils import Cluster

        self.temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay short
        os.environ["RAY_TMPDIR"] = self.temp_dir  # where Cluster records the address: not the default /tmp/ray
        ray_dir = Path(self.temp_dir) / "ray"
        ray_dir.mkdir()
        port = free_port()
        ip = ray._private.services.resolve_ip_for_localhost("127.0.0.1")  # as `ray start --node-ip-address`
        self.cluster = Cluster(initialize_head=True, head_node_args=dict(
            num_cpus=cpus[0], node_ip_address=ip, gcs_server_port=port, temp_dir=str(ray_dir),
            include_dashboard=False, object_store_memory=OBJECT_STORE))
        self.nodes = [self.cluster.head_node]
        for n in cpus[1:]:
            self.nodes.append(self.cluster.add_node(num_cpus=n, node_ip_address=ip, object_store_memory=OBJECT_STORE))
        self.cluster.wait_for_nodes()
        self.address = f"127.0.0.1:{port}"

    def shutdown(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        self.cluster.shutdown()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _stat(pid: int) -> tuple[str, float] | None:
    """A process's start time and CPU seconds (user + system)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return fields[19], (int(fields[11]) + int(fields[12])) / tick


def _kind(pid: int, driver: int) -> str:
    if pid == driver:
        return "driver"
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "ray_other"
    program = title.split(" ", 1)[0]
    if program.endswith("/raylet"):
        return "raylets"
    if program.endswith("/gcs_server"):
        return "gcs"
    if title.startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent")):
        return "ray_other"
    if title.startswith("ray::") or "default_worker.py" in title:
        return "workers"
    return "ray_other"


class CpuSampler(threading.Thread):
    """CPU seconds spent by the processes under this one (the cluster's and the job's) while it
    runs, by kind; a process's CPU counts from the first sample (or from its start)."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.driver = -1
        self.first: dict[tuple[int, str], float] = {}
        self.last: dict[tuple[int, str], float] = {}
        self.kinds: dict[tuple[int, str], str] = {}
        self.done = threading.Event()
        self._sample(baseline=True)

    def _sample(self, baseline: bool = False) -> None:
        for pid in process_tree(os.getpid())[1:]:
            found = _stat(pid)
            if found is None:
                continue
            key = (pid, found[0])
            if key not in self.first:
                self.first[key] = found[1] if baseline else 0.0
            kind = _kind(pid, self.driver)
            # A worker is seen as one once it has exec'd or runs something; an exiting process has
            # no title (its kind is kept).
            if key not in self.kinds or kind == "workers":
                self.kinds[key] = kind
            self.last[key] = found[1]

    def run(self) -> None:
        while not self.done.is_set():
            self._sample()
            self.done.wait(self.interval)
        self._sample()

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, last in self.last.items():
            kind = self.kinds[key]
            out[kind] = out.get(kind, 0.0) + last - self.first[key]
        return {kind: round(seconds, 3) for kind, seconds in sorted(out.items())}


def run_job(cluster: LocalCluster, lake: Path, ledgers: int, batch_size: int, work: Path, name: str) -> dict:
    out = work / f"out-{name}"
    shutil.rmtree(out, ignore_errors=True)
    log = work / f"{name}.log"
    command = [sys.executable, "-m", "obsrvr_ray.jobs.backfill", "--ray-address", cluster.address,
               "--source", str(lake),
               "--start", "2", "--end", str(ledgers + 1), "--out", str(out), "--batch-size", str(batch_size),
               "--concurrent-readers", "2", "--log-level", "INFO"]
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    sampler = CpuSampler()
    with log.open("w") as sink:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=sink)
        sampler.driver = proc.pid
        sampler.start()
        code = proc.wait()
        sampler.done.set()
        sampler.join()
    if code != 0:
        raise SystemExit(f"{name}: the job exited {code}; see {log}")
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    stamp = {e["event"]: dt.datetime.fromisoformat(e["ts"]) for e in events if e["event"] != "chunk_committed"}
    chunks = [e for e in events if e["event"] == "chunk_committed"]
    last = max(dt.datetime.fromisoformat(e["ts"]) for e in chunks)
    seconds = (last - stamp["cluster_connected"]).total_seconds()
    moved = [c for c in chunks if c["transferred"]]
    local = [c for c in chunks if not c["transferred"]]
    cpu = sampler.totals()
    result = {
        "run": name, "ledgers": ledgers, "chunks": len(chunks),
        "pipeline_seconds": round(seconds, 3), "ledgers_per_second": round(ledgers / seconds, 1),
        "work_cpu_seconds": round(sum(c["cpu_seconds"] + c["read_cpu_seconds"] for c in chunks), 3),
        "task_cpu_seconds": round(sum(c["cpu_seconds"] for c in chunks), 3),
        "read_cpu_seconds": round(sum(c["read_cpu_seconds"] for c in chunks), 3),
        "task_seconds": round(sum(c["seconds"] for c in chunks), 3),
        "cpu_seconds": cpu, "cpu_seconds_total": round(sum(cpu.values()), 3),
        "transferred_chunks": len(moved), "transferred_bytes": sum(c["raw_bytes"] for c in moved),
        "chunk_bytes_mean": round(statistics.mean(c["raw_bytes"] for c in chunks)),
        "handoff_median_s": {"transferred": round(statistics.median(c["handoff_seconds"] for c in moved), 4)
                             if moved else None,
                             "local": round(statistics.median(c["handoff_seconds"] for c in local), 4)
                             if local else None},
        "reruns": sum(1 for c in chunks if c["attempt"] or c["read_attempt"]),
        "nodes": next(e["nodes"] for e in events if e["event"] == "nodes_summary"),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "nodes"}), flush=True)
    return result


def median_run(runs: list[dict]) -> dict:
    """The median of each number over runs of one range (and of each kind's CPU seconds)."""
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = statistics.median(r[key] for r in runs)
    kinds = {k for r in runs for k in r["cpu_seconds"]}
    out["cpu_seconds"] = {k: statistics.median(r["cpu_seconds"].get(k, 0.0) for r in runs) for k in kinds}
    out["cpu_seconds_total"] = statistics.median(r["cpu_seconds_total"] for r in runs)
    return out


def marginal(short: dict, long: dict, cpus: int) -> dict:
    """Per chunk, from the difference between the long and the short run. The overhead is the CPU
    the driver, the raylets and the GCS spend, and the workers' CPU outside the chunks' own reads
    and commit tasks (Ray's task and object handling in them); Ray's other processes (dashboard
    agents, log monitor, autoscaler) are listed apart: their bursts do not follow the chunks."""
    chunks = long["chunks"] - short["chunks"]

    def per_chunk(key: str) -> float:
        return (long[key] - short[key]) / chunks

    work = per_chunk("work_cpu_seconds")
    kinds = sorted(set(long["cpu_seconds"]) | set(short["cpu_seconds"]))
    by_kind = {k: (long["cpu_seconds"].get(k, 0) - short["cpu_seconds"].get(k, 0)) / chunks for k in kinds}
    overhead = sum(by_kind.get(k, 0.0) for k in ("driver", "gcs", "raylets", "workers")) - work
    return {
        "chunks": chunks,
        "work_cpu_s": round(work, 4),
        "overhead_cpu_s": round(overhead, 4),
        "overhead_share_of_work": round(overhead / work, 3),
        "cpu_s_by_kind": {k: round(v, 4) for k, v in by_kind.items()},
        "workers_outside_work_s": round(by_kind.get("workers", 0.0) - work, 4),
        "slot_seconds": round(per_chunk("pipeline_seconds") * cpus, 4),  # CPU-slot seconds a chunk occupied
        "task_seconds": round(per_chunk("task_seconds"), 4),
    }


def transfer_times(cluster: LocalCluster, sizes: list[int], reps: int = 15) -> list[dict]:
    """Seconds for a task to get an object of each size made on its own node or on another."""
    import pyarrow as pa
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(address=cluster.address, logging_level="WARNING")

    @ray.remote(num_cpus=0)
    def make(size: int) -> pa.Table:
        return pa.table({"data": pa.array([os.urandom(size)], pa.large_binary())})

    @ray.remote(num_cpus=0)
    def touch(table: pa.Table) -> int:
        return table.nbytes

    source, other = cluster.nodes[1].node_id, cluster.nodes[2].node_id
    on = {node: NodeAffinitySchedulingStrategy(node, soft=False) for node in (source, other)}
    ray.get(touch.options(scheduling_strategy=on[other]).remote(make.options(scheduling_strategy=on[source]).remote(1)))
    out = []
    for size in sizes:
        times: dict[str, list[float]] = {"same_node": [], "other_node": []}
        for _ in range(reps):
            for where, node in (("same_node", source), ("other_node", other)):
                ref = make.options(scheduling_strategy=on[source]).remote(size)
                ray.wait([ref], fetch_local=False)
                began = time.perf_counter()
                ray.get(touch.options(scheduling_strategy=on[node]).remote(ref))
                times[where].append(time.perf_counter() - began)
                del ref
        same, moved = statistics.median(times["same_node"]), statistics.median(times["other_node"])
        row = {"bytes": size, "same_node_s": round(same, 5), "other_node_s": round(moved, 5),
               "transfer_s": round(moved - same, 5),
               "transfer_mb_per_s": round(size / 1e6 / (moved - same), 1) if moved > same else None}
        print(json.dumps(row), flush=True)
        out.append(row)
    ray.shutdown()
    return out


def real_lake(work: Path, shared: Path) -> Path:
    """A lake of every real pubnet ledger in ../shared/data (read in place, imported once)."""
    from obsrvr_ray.network import PUBNET
    from obsrvr_ray.objectstore import LocalStore
    from obsrvr_ray.sinks.lake_writer import LakeWriter, import_files, read_ledger_file
    from obsrvr_ray.sources.lake_layout import LakeConfig

    root = work / "real-lake"
    if not (root / ".complete").exists():
        files = sorted(p for p in (shared / "ledgers").glob("*/*")
                       if p.is_file() and p.suffix != ".md" and p.parent.name != "stellar-go-testnet")
        if not files:
            raise SystemExit(f"no real ledgers under {shared}/ledgers (--shared or OBSRVR_SHARED_DATA)")
        import_files(files, LakeWriter(LocalStore(root), LakeConfig(network_passphrase=PUBNET)))
        sequences = sorted(seq for path in files for seq, _ in read_ledger_file(path))
        (root / ".sequences").write_text(json.dumps(sequences))
        (root / ".complete").write_text("ok\n")
    return root


def chunk_cpu(lake: Path, ledgers: str, batch_size: int, tables: str, out: Path) -> tuple[float, float, int]:
    """CPU seconds to read the ledgers' chunks (fetch, decompress, split) and to process them
    (decode, validate, extract, build Arrow, write Parquet, commit to the Delta tables), in this
    process as a chunk task would, into a fresh output; and the number of chunks."""
    from obsrvr_ray.backfill_settings import add_arguments, from_arguments
    from obsrvr_ray.chunks.job import output_shape, resolve
    from obsrvr_ray.chunks.plan import plan as cut
    from obsrvr_ray.chunks.process import process_unit
    from obsrvr_ray.chunks.raw import read_unit
    from obsrvr_ray.table.location import TableLocation
    from obsrvr_ray.table.tableset import TableSet

    # A new path each time: worker-side caches (obsrvr_ray.chunks.process) keep tables by output.
    out = out.with_name(f"{out.name}-{time.monotonic_ns()}")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = from_arguments(parser.parse_args(["--source", str(lake), "--ledgers", ledgers, "--out", str(out),
                                               "--batch-size", str(batch_size), "--tables", tables]))
    job = resolve(config)
    TableSet(TableLocation(str(out))).ensure(output_shape(job.settings), job.settings.tables)
    units = list(cut(config.ranges, {}, job.grid))
    source = job.source.open()
    began = time.process_time()
    raws = [read_unit(source, unit) for unit in units]
    read = time.process_time() - began
    began = time.process_time()
    for unit, raw in zip(units, raws, strict=True):
        process_unit(unit, raw, job.settings)
    cpu = time.process_time() - began
    shutil.rmtree(out, ignore_errors=True)
    return read, cpu, len(units)


def ledger_costs(work: Path, shared: Path, rounds: int = 5) -> dict:
    """What a ledger and a chunk cost on one core, on the real ledgers. A ledger: its chunk's
    rows built (decode, validate, extract, Arrow tables, filter, analytics partials) plus its
    tables written as Parquet (zstd), each alone, best of `rounds` (a shared machine). A chunk:
    its commits to the Delta tables, from the 20 consecutive protocol-26 ledgers processed (rows,
    files and commits, into a fresh output) as 20 one-ledger chunks and as 2 chunks: the
    difference over the 18 chunks more is what a chunk costs beyond its ledgers."""
    import io

    import pyarrow.parquet as pq

    from obsrvr_ray.backfill_settings import add_arguments, from_arguments
    from obsrvr_ray.chunks.job import resolve
    from obsrvr_ray.chunks.plan import Segment, WorkUnit
    from obsrvr_ray.chunks.process import build_commit
    from obsrvr_ray.chunks.raw import read_unit

    lake = real_lake(work, shared)
    run = "63092982-63093001"
    out = {}
    for tables in ("token_transfers", "ledgers,transactions,token_transfers"):
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        config = from_arguments(parser.parse_args(["--source", str(lake), "--ledgers", "1", "--out",
                                                   str(work / "unused"), "--tables", tables]))
        job = resolve(config)
        source = job.source.open()
        ledgers = {}
        for seq in sorted(int(k) for k in json.loads((work / "real-lake" / ".sequences").read_text())):
            unit = WorkUnit((seq, seq), 0, (Segment(seq, seq, False),))
            raw = read_unit(source, unit)
            build = write = float("inf")
            for _ in range(rounds):
                began = time.process_time()
                commit = build_commit(unit, raw, job.settings)
                build = min(build, time.process_time() - began)
                began = time.process_time()
                sizes = {}
                for name, table in commit.tables.items():
                    sink = io.BytesIO()
                    pq.write_table(table, sink, compression="zstd")
                    sizes[name] = sink.tell()
                write = min(write, time.process_time() - began)
            ledgers[str(seq)] = {"xdr_bytes": len(raw["data"][0].as_py()), "rows_cpu_s": round(build, 5),
                                 "parquet_cpu_s": round(write, 5), "ledger_cpu_s": round(build + write, 5),
                                 "parquet_bytes": sizes, "events": commit.events}
        chunk_cpu(lake, run, 40, tables, work / "warm-up")  # imports, first Delta writes
        best: dict[str, tuple] = {}
        for _ in range(3):
            for name, batch in (("one_ledger_chunks", 1), ("two_chunks", 40)):
                result = chunk_cpu(lake, run, batch, tables, work / f"costs-{name}")
                if name not in best or result[1] < best[name][1]:
                    best[name] = result
        (_, cpu_a, chunks_a), (read_b, cpu_b, chunks_b) = best["one_ledger_chunks"], best["two_chunks"]
        recent = [v for k, v in ledgers.items() if int(k) >= 63_092_982]
        out[tables] = {
            "chunk_fixed_cpu_s": round((cpu_a - cpu_b) / (chunks_a - chunks_b), 4),
            "p26_chunked_ledger_cpu_s": round((cpu_b - chunks_b * (cpu_a - cpu_b) / (chunks_a - chunks_b)) / 20, 5),
            "p26_ledger_cpu_s": round(statistics.mean(v["ledger_cpu_s"] for v in recent), 5),
            "p26_read_cpu_s_per_ledger": round(read_b / 20, 5),
            "p26_mean_xdr_bytes": round(statistics.mean(v["xdr_bytes"] for v in recent)),
            "ledgers": ledgers,
        }
        print(json.dumps({tables: {k: v for k, v in out[tables].items() if k != "ledgers"}}), flush=True)
    return out


def commit_growth(work: Path, lake: Path, chunks: int = 800, after: int = 100) -> dict:
    """Whether a commit gets dearer as a table grows: `chunks` one-ledger chunks committed one
    after the other into one output (in this process, local disk), the median time of each 100;
    then the tables compacted (`obsrvr-ray table compact`: a file per partition) and `after`
    chunks more. A chunk here commits 5 tables (token_transfers, its two analytics partials,
    failures, chunks), each one file per chunk."""
    from deltalake import DeltaTable

    from obsrvr_ray.backfill_settings import add_arguments, from_arguments
    from obsrvr_ray.chunks.job import output_shape, resolve
    from obsrvr_ray.chunks.plan import plan as cut
    from obsrvr_ray.chunks.process import process_unit
    from obsrvr_ray.chunks.raw import read_unit
    from obsrvr_ray.table.location import TableLocation
    from obsrvr_ray.table.maintenance import compact
    from obsrvr_ray.table.tableset import TableSet

    out = work / f"costs-growth-{time.monotonic_ns()}"
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    def run(first: int, last: int) -> list[float]:
        config = from_arguments(parser.parse_args(["--source", str(lake), "--start", str(first), "--end", str(last),
                                                   "--out", str(out), "--batch-size", "1"]))
        job = resolve(config)
        TableSet(TableLocation(str(out))).ensure(output_shape(job.settings), job.settings.tables)
        source = job.source.open()
        seconds = []
        for unit in cut(config.ranges, {}, job.grid):
            raw = read_unit(source, unit)
            began = time.perf_counter()
            process_unit(unit, raw, job.settings)
            seconds.append(time.perf_counter() - began)
        return seconds

    seconds = run(2, chunks + 1)
    windows = [round(statistics.median(seconds[i:i + 100]), 4) for i in range(0, len(seconds), 100)]
    table = DeltaTable(str(out / "token_transfers"))
    files = len(table.file_uris())
    began = time.perf_counter()
    compact(TableSet(TableLocation(str(out))))
    compaction = time.perf_counter() - began
    later = run(chunks + 2, chunks + 1 + after)
    shutil.rmtree(out, ignore_errors=True)
    xs = [50 + 100 * i for i in range(len(windows))]
    mean_x, mean_y = statistics.mean(xs), statistics.mean(windows)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, windows, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs)
    return {
        "chunks": len(seconds), "tables_committed_per_chunk": 5, "files_per_table": files,
        "chunk_seconds_median_per_100": windows,
        "fit_seconds_at_0": round(mean_y - slope * mean_x, 4), "fit_seconds_per_file": round(slope, 6),
        "compaction_seconds": round(compaction, 2),
        "chunk_seconds_median_after_compaction": round(statistics.median(later), 4),
    }


def planning_seconds() -> dict:
    """The driver's planning (cutting the ledgers into chunks, none committed) for all of pubnet's
    history up to the newest real ledger here, at two chunk sizes."""
    from obsrvr_ray.chunks.plan import Grid
    from obsrvr_ray.chunks.plan import plan as cut

    out = {}
    for batch in (64, 512):
        began = time.perf_counter()
        units = list(cut(((2, 63_093_001),), {}, Grid.aligned(batch, 1, 64_000)))
        out[str(batch)] = {"chunks": len(units), "seconds": round(time.perf_counter() - began, 3)}
    return out


def measure(args: argparse.Namespace) -> None:
    args.work_dir.mkdir(parents=True, exist_ok=True)
    lake = sandbox_lake(args.work_dir, max(args.long, args.short))
    configs = {}
    transfer = []
    load = {"before": os.getloadavg()[0]}  # other work on the machine skews every number here
    for nodes, cpus in CONFIGS.items():
        began = time.monotonic()
        cluster = LocalCluster(cpus)
        started = round(time.monotonic() - began, 1)
        try:
            runs = [run_job(cluster, lake, ledgers, args.batch_size, args.work_dir, f"{nodes}-nodes-{ledgers}-{r}")
                    for r in range(args.rounds) for ledgers in (args.short, args.long)]
            if nodes == 3:
                chunk = runs[1]["chunk_bytes_mean"]
                transfer = transfer_times(cluster, [chunk, 16 * 2**20, 64 * 2**20])
        finally:
            cluster.shutdown()
        short = median_run([r for r in runs if r["ledgers"] == args.short])
        long = median_run([r for r in runs if r["ledgers"] == args.long])
        configs[str(nodes)] = {"cpus_per_node": cpus, "cluster_start_seconds": started, "runs": runs,
                               "per_chunk": marginal(short, long, sum(cpus))}
        print(json.dumps({"nodes": nodes, "per_chunk": configs[str(nodes)]["per_chunk"]}), flush=True)
    result = {"benchmark": "nodes", "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "batch_size": args.batch_size, "ledgers": [args.short, args.long],
              "rounds": args.rounds, "load_average_1min": {**load, "after": os.getloadavg()[0]},
              "lake": "generated sandbox ledgers, one per object", "configs": configs, "transfer": transfer}
    save(result)


def save(section: dict) -> None:
    """Merge into the results file (each subcommand writes its own keys)."""
    previous = json.loads(RESULT_FILE.read_text()) if RESULT_FILE.exists() else {}
    RESULTS.mkdir(parents=True, exist_ok=True)
    RESULT_FILE.write_text(json.dumps({**previous, **section}, indent=2) + "\n")
    print(f"written to {RESULT_FILE}")


# --- the full-history plan ----------------------------------------------------------------------
#
# Public figures it uses (cited in docs/full-history.md):
LAST_LEDGER = 63_093_001  # the newest real ledger in ../shared/data (closed 2026-06-19)
P20_DATE = dt.datetime(2024, 2, 20, tzinfo=dt.UTC)  # Soroban (protocol 20) voted in on Mainnet
P23_DATE = dt.datetime(2025, 9, 3, 17, tzinfo=dt.UTC)  # protocol 23 (Whisk) vote, 17:00 UTC
PARTITION = 64_000  # ledgers per partition (one S3 prefix) in the galexie layout of the public lake
GETS_PER_PREFIX = 5_500  # S3: GET/HEAD requests per second per partitioned prefix
INSTANCE = {"type": "c5.4xlarge", "vcpus": 16, "memory_gib": 32, "on_demand": 0.68, "spot": (0.318, 0.361)}
OBJECT_STORE_GB = 0.3 * 32 * 2**30 / 1e9  # Ray's default object store: 30% of the node's memory
NODES = (10, 100, 1000)


def real_facts(shared: Path) -> list[dict]:
    """Each real pubnet ledger here: sequence, protocol, close time, XDR bytes and zstd bytes
    (level 3: within 2% of galexie's own object for the one galexie object here)."""
    import zstandard

    from obsrvr_ray.ledger.decode import peek_header
    from obsrvr_ray.sinks.lake_writer import read_ledger_file

    facts = []
    compressor = zstandard.ZstdCompressor(level=3)
    for path in sorted((shared / "ledgers").glob("*/*")):
        if not path.is_file() or path.suffix == ".md" or path.parent.name == "stellar-go-testnet":
            continue
        for seq, data in read_ledger_file(path):
            header = peek_header(data).header
            closed = dt.datetime.fromtimestamp(header.scp_value.close_time.time_point.uint64, dt.UTC)
            facts.append({"sequence": seq, "protocol": header.ledger_version.uint32, "closed": closed.isoformat(),
                          "xdr_bytes": len(data), "zstd_bytes": len(compressor.compress(data))})
    return sorted(facts, key=lambda f: f["sequence"])


def _at(anchors: list[tuple[float, float]], x: float) -> float:
    """Piecewise-linear through the anchors, flat beyond them."""
    if x <= anchors[0][0]:
        return anchors[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(anchors):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return anchors[-1][1]


def _integral(anchors: list[tuple[float, float]], a: float, b: float) -> float:
    """The sum over ledgers a..b of the piecewise-linear function (trapezoids)."""
    points = sorted({a, b, *(x for x, _ in anchors if a < x < b)})
    return sum((x1 - x0) * (_at(anchors, x0) + _at(anchors, x1)) / 2 for x0, x1 in itertools.pairwise(points))


def _ledger_at(facts: list[dict], when: dt.datetime) -> int:
    """The ledger closing at `when`, by the close times of the real ledgers either side."""
    times = [(dt.datetime.fromisoformat(f["closed"]).timestamp(), f["sequence"]) for f in facts]
    return round(_at(times, when.timestamp()))


def plan(shared: Path) -> None:
    """Replay the measured costs over pubnet's history at 10, 100 and 1,000 nodes."""
    data = json.loads(RESULT_FILE.read_text())
    costs, configs, transfer = data["ledger_costs"], data["configs"], data["transfer"]
    facts = real_facts(shared)
    p20, p23 = _ledger_at(facts, P20_DATE), _ledger_at(facts, P23_DATE)
    eras = {"protocols 1-19 (LCM v0)": (1, p20 - 1), "protocols 20-22 (v1)": (p20, p23 - 1),
            "protocols 23-26 (v2)": (p23, LAST_LEDGER)}
    three = configs["3"]["per_chunk"]
    ray_overhead = max(three["overhead_cpu_s"], 0.0)
    driver_per_chunk = max(three["cpu_s_by_kind"].get("driver", 0.0), 1e-4)
    growth = costs["commit_growth"]
    tables_per_chunk = growth["tables_committed_per_chunk"]
    commit_first = growth["fit_seconds_at_0"] / tables_per_chunk  # one table's commit, an empty table
    commit_per_file = growth["fit_seconds_per_file"] / tables_per_chunk  # and per file it holds
    moved = max(transfer, key=lambda t: t["bytes"])
    transfer_s_per_byte = moved["transfer_s"] / moved["bytes"]
    result: dict = {"inputs": {
        "real_ledgers": facts, "protocol_20_first_ledger_estimate": p20, "protocol_23_first_ledger_estimate": p23,
        "instance": INSTANCE, "object_store_gb_per_node": round(OBJECT_STORE_GB, 2),
        "ray_overhead_cpu_s_per_chunk": ray_overhead, "driver_cpu_s_per_chunk": driver_per_chunk,
        "commit_s_per_table_empty": round(commit_first, 5), "commit_s_per_table_per_file": commit_per_file,
        "transfer_s_per_byte": transfer_s_per_byte, "gets_per_s_per_prefix": GETS_PER_PREFIX,
        "ledgers_per_prefix": PARTITION}, "configs": {}}
    by_seq = {f["sequence"]: f for f in facts}

    def curve(values: dict[int, float]) -> list[tuple[float, float]]:
        """Anchors by sequence; the 20 consecutive protocol-26 ledgers as one, at their mean."""
        recent = [s for s in values if s >= 63_092_982]
        points = [(s, v) for s, v in values.items() if s < 63_092_982]
        points.append((statistics.mean(recent), statistics.mean(values[s] for s in recent)))
        return sorted(points)

    xdr = curve({s: f["xdr_bytes"] for s, f in by_seq.items()})
    zstd = curve({s: f["zstd_bytes"] for s, f in by_seq.items()})
    for tables, measured in ((k, v) for k, v in costs.items() if isinstance(v, dict) and "ledgers" in v):
        per = {int(k): v for k, v in measured["ledgers"].items()}
        # A ledger measured alone also pays what a chunk pays once (building its tables, a Parquet
        # file's header and footer): the smallest ledger here (no transaction) is that alone. It is
        # taken off every ledger and counted per chunk (chunk_fixed_cpu_s already holds its CPU).
        base = per[min(per, key=lambda seq: per[seq]["xdr_bytes"])]
        base_bytes = sum(base["parquet_bytes"].values())
        cpu = curve({s: max(v["ledger_cpu_s"] - base["ledger_cpu_s"], 0.0) for s, v in per.items()})
        events = curve({s: v["events"] for s, v in per.items()})
        parquet = curve({s: max(sum(v["parquet_bytes"].values()) - base_bytes, 0) for s, v in per.items()})
        read_per_byte = measured["p26_read_cpu_s_per_ledger"] / measured["p26_mean_xdr_bytes"]
        rows = {}
        for era, (a, b) in eras.items():
            ledgers = b - a + 1
            xdr_bytes = _integral(xdr, a, b)
            mean_xdr = xdr_bytes / ledgers
            # Chunk size: the window (2 chunks per core) must fit the node's object store.
            batch = int(min(PARTITION, max(64, OBJECT_STORE_GB * 1e9 / (2 * INSTANCE["vcpus"] * mean_xdr))))
            chunks = -(-ledgers // batch)
            ledger_cpu = _integral(cpu, a, b) + xdr_bytes * read_per_byte
            chunk_cpu = chunks * (measured["chunk_fixed_cpu_s"] + ray_overhead)
            rows[era] = {
                "first": a, "last": b, "ledgers": ledgers, "xdr_tb": round(xdr_bytes / 1e12, 2),
                "zstd_tb": round(_integral(zstd, a, b) / 1e12, 2),
                "token_transfer_rows_billions": round(_integral(events, a, b) / 1e9, 2),
                "output_parquet_tb": round((_integral(parquet, a, b) + chunks * base_bytes) / 1e12, 2),
                "mean_ledger_kb": round(mean_xdr / 1e3, 1), "batch_size": batch, "chunks": chunks,
                "chunk_mb": round(batch * mean_xdr / 1e6), "s3_gets": ledgers,
                "core_hours": round((ledger_cpu + chunk_cpu) / 3600, 1),
                "chunk_overhead_core_hours": round(chunk_cpu / 3600, 2),
                "ledgers_per_core_second": round(ledgers / (ledger_cpu + chunk_cpu), 1),
                "transfer_s_per_chunk_if_moved": round(batch * mean_xdr * transfer_s_per_byte, 3),
                "work_s_per_chunk": round((ledger_cpu + chunk_cpu) / chunks, 2),
            }
        scenarios = {}
        for scenario, per_file in (("as_built", commit_per_file), ("commit_cost_flat", 0.0)):
            at_nodes = {}
            for nodes in NODES:
                cores = nodes * INSTANCE["vcpus"]
                files = 0
                per_era = {}
                for era, row in rows.items():
                    era_bounds = {
                        "cpu": row["core_hours"] * 3600 / cores,
                        "s3_requests": row["ledgers"] / (GETS_PER_PREFIX
                                                         * max(1.0, 2 * cores * row["batch_size"] / PARTITION)),
                        "driver": row["chunks"] * driver_per_chunk,
                        # A table's commits are serial; each costs more the more files the table holds.
                        "table_commits": row["chunks"] * (commit_first + per_file * (files + row["chunks"] / 2)),
                    }
                    files += row["chunks"]
                    bound = max(era_bounds, key=era_bounds.get)
                    per_era[era] = {"hours": round(era_bounds[bound] / 3600, 2), "bound": bound,
                                    "bounds_hours": {k: round(v / 3600, 2) for k, v in era_bounds.items()}}
                hours = sum(v["hours"] for v in per_era.values())
                node_hours = (nodes + 1) * hours  # and a head node
                at_nodes[str(nodes)] = {
                    "hours": round(hours, 1), "per_era": per_era,
                    "dollars_on_demand": round(node_hours * INSTANCE["on_demand"]),
                    "dollars_spot": [round(node_hours * price) for price in INSTANCE["spot"]],
                }
            scenarios[scenario] = at_nodes
        total = {key: round(sum(r[key] for r in rows.values()), 2)
                 for key in ("ledgers", "chunks", "core_hours", "xdr_tb", "zstd_tb", "token_transfer_rows_billions",
                             "output_parquet_tb")}
        result["configs"][tables] = {"eras": rows, "total": total, "scenarios": scenarios}
        print(json.dumps({tables: {"total": total, **{name: {n: (at["hours"], at["dollars_on_demand"],
                                                                 [e["bound"] for e in at["per_era"].values()])
                                                             for n, at in sc.items()}
                                                      for name, sc in scenarios.items()}}}), flush=True)
    save({"plan": result})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", choices=["measure", "costs", "plan"], default="measure")
    parser.add_argument("--short", type=int, default=500, help="ledgers of the short run")
    parser.add_argument("--long", type=int, default=2000, help="ledgers of the long run (and the lake's size)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each range per configuration (medians)")
    parser.add_argument("--shared", type=Path,
                        default=Path(os.environ.get("OBSRVR_SHARED_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "obsrvr-bench")
    args = parser.parse_args()
    if args.what == "plan":
        plan(args.shared)
    elif args.what == "costs":
        args.work_dir.mkdir(parents=True, exist_ok=True)
        costs = ledger_costs(args.work_dir, args.shared)
        growth = commit_growth(args.work_dir, sandbox_lake(args.work_dir, max(args.long, args.short)))
        print(json.dumps(growth), flush=True)
        save({"ledger_costs": {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
                               "load_average_1min": os.getloadavg()[0], **costs,
                               "commit_growth": growth, "planning": planning_seconds()}})
    else:
        measure(args)


if __name__ == "__main__":
    main()
