"""Backfill throughput with 1 and 2 reader actors, and peak memory for a short and a long range.

Every run is the real job (`python -m obsrvr_ray.jobs.backfill`) in its own process with its
own local Ray cluster (`--ray-address local`), over a generated sandbox lake (one ledger per object,
as the public pubnet lake). While it runs, the proportional set size (PSS: shared pages split
between the processes sharing them, so the object store is counted once) of the driver and
every process it started (GCS, raylet, dashboard, workers) is sampled from /proc (Linux only).

  ledgers/s   ledgers / (last chunk committed - cluster connected), from the job's JSON logs:
              the pipeline's rate, without Ray's start-up
  peak PSS    the largest sum over the process tree during the run

Then the same 1-vs-2-reader pair reads the lake from a remote-like object store: an
S3-compatible endpoint answering each GET after `--latency-ms`, with `--prefetch 1`, so that
fetching, not decoding, is the bottleneck, as with a far bucket or a rate-limited RPC node.

    python -m benchmarks.backfill_bench [--ledgers 2000] [--short 500] [--latency-ms 10]

Results (with the machine's description) go to benchmarks/results/backfill_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import RESULTS, machine, process_tree, sandbox_lake

REPO = Path(__file__).resolve().parents[1]


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler(threading.Thread):
    """Peak PSS of a process tree, sampled every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kib = self.peak_driver_kib = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak_kib = max(self.peak_kib, sum(_pss_kib(p) for p in process_tree(self.pid)))
            self.peak_driver_kib = max(self.peak_driver_kib, _pss_kib(self.pid))
            self.done.wait(self.interval)


def run_job(source: str, ledgers: int, readers: int, work: Path, name: str, extra: tuple[str, ...] = ()) -> dict:
    out = work / f"out-{name}"
    shutil.rmtree(out, ignore_errors=True)
    log = work / f"{name}.log"
    command = [sys.executable, "-m", "obsrvr_ray.jobs.backfill", "--ray-address", "local", "--source", source,
               "--start", "2", "--end", str(ledgers + 1), "--out", str(out), "--concurrent-readers", str(readers),
               *extra]
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    began = time.monotonic()
    with log.open("w") as sink:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=sink)
        sampler = MemorySampler(proc.pid)
        sampler.start()
        code = proc.wait()
        sampler.done.set()
        sampler.join()
    wall = time.monotonic() - began
    if code != 0:
        raise SystemExit(f"{name}: the job exited {code}; see {log}")
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    stamp = {e["event"]: dt.datetime.fromisoformat(e["ts"]) for e in events if e["event"] != "chunk_committed"}
    last = max(dt.datetime.fromisoformat(e["ts"]) for e in events if e["event"] == "chunk_committed")
    seconds = (last - stamp["cluster_connected"]).total_seconds()
    result = {
        "run": name, "ledgers": ledgers, "readers": readers, "extra_args": list(extra),
        "pipeline_seconds": round(seconds, 2), "ledgers_per_second": round(ledgers / seconds, 1),
        "wall_seconds": round(wall, 2), "peak_pss_mib": round(sampler.peak_kib / 1024, 1),
        "peak_driver_pss_mib": round(sampler.peak_driver_kib / 1024, 1),
    }
    print(json.dumps(result), flush=True)
    return result


def slow_object_store(lake: Path, latency: float) -> str:
    """An S3-compatible endpoint (GET only, path style) serving the lake's files after `latency`
    seconds each, from a thread of this process: a remote store whose cost is waiting, not CPU,
    which this 2-core machine cannot otherwise show (moto's server is CPU-bound)."""
    from aiohttp import web

    async def get(request: web.Request) -> web.Response:
        await asyncio.sleep(latency)
        path = lake / request.match_info["key"].partition("/")[2]  # drop the prefix: s3://bench/lake/<key>
        if not path.is_file():
            return web.Response(status=404, content_type="application/xml",
                                text="<Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>")
        return web.Response(body=path.read_bytes(), content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/{bucket}/{key:.*}", get)
    started: queue.Queue = queue.Queue()

    def serve() -> None:
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        started.put(site._server.sockets[0].getsockname()[1])
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{started.get(timeout=10)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ledgers", type=int, default=2000, help="the long range (and the lake's size)")
    parser.add_argument("--short", type=int, default=500, help="the short range, for the memory comparison")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--latency-ms", type=int, default=10,
                        help="also measure readers against an object store answering after this delay (0: skip)")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "obsrvr-bench")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    lake = sandbox_lake(args.work_dir, args.ledgers)
    shape = ("--batch-size", str(args.batch_size), "--log-level", "INFO")
    runs = [
        run_job(str(lake), args.ledgers, 1, args.work_dir, "local-1-reader", shape),
        run_job(str(lake), args.ledgers, 2, args.work_dir, "local-2-readers", shape),
        run_job(str(lake), args.short, 2, args.work_dir, "local-2-readers-short", shape),
    ]
    if args.latency_ms:
        endpoint = slow_object_store(lake, args.latency_ms / 1000)
        remote = (*shape, "--s3-endpoint-url", endpoint, "--s3-region", "us-east-1", "--anonymous", "--prefetch", "1")
        runs += [run_job("s3://bench/lake", args.ledgers, readers, args.work_dir, f"remote-{readers}-reader", remote)
                 for readers in (1, 2)]
    by_name = {r["run"]: r for r in runs}
    summary = {
        "readers_2_over_1_local": round(by_name["local-2-readers"]["ledgers_per_second"]
                                        / by_name["local-1-reader"]["ledgers_per_second"], 2),
        "peak_pss_mib_short_vs_long": [by_name["local-2-readers-short"]["peak_pss_mib"],
                                       by_name["local-2-readers"]["peak_pss_mib"]],
        "peak_pss_long_over_short": round(by_name["local-2-readers"]["peak_pss_mib"]
                                          / by_name["local-2-readers-short"]["peak_pss_mib"], 2),
    }
    if args.latency_ms:
        summary[f"readers_2_over_1_remote_{args.latency_ms}ms_prefetch1"] = round(
            by_name["remote-2-reader"]["ledgers_per_second"] / by_name["remote-1-reader"]["ledgers_per_second"], 2)
    result = {"benchmark": "backfill", "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "batch_size": args.batch_size, "runs": runs, "summary": summary}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "backfill_bench.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2), f"\nwritten to {path}")


if __name__ == "__main__":
    main()
