"""The live app under load, on loopback: WebSocket fan-out to 1, 10 and 100 subscribers, and REST
requests/s with p50/p99 latency at 1, 8 and 32 concurrent clients.

One run starts a throwaway local Ray (2 CPUs) and the real app (`compose(live_config_from_args(...))`,
the Follower, Api and Flight deployments behind Serve's HTTP proxy), fed by a getLedgers server in
this process that serves pre-generated sandbox ledgers (the generated lake `benchmarks.common`
caches for the backfill benchmark):

1. history: the server starts with `--history` ledgers; the follower catches up and commits them
   (its catch-up rate is reported). The feed then stays paused, so the dataset does not change
   under the REST runs.
2. REST: `GET /health/live` (the cheapest route: the baseline), `GET /v1/token-transfers?limit=100`
   and `GET /v1/ledgers/{random committed ledger}`, each with c concurrent closed-loop clients (one
   asyncio loop, aiohttp, keep-alive) in a child process, for `--rest-seconds` once every client
   has had an answer: requests/s of 200s and the p50/p99 of their latency. Then a probe: 16
   concurrent requests for the ledgers not committed yet (only the follower holds them) -- does
   every answer still have their rows?
3. WebSocket: the feed closes `--rate` ledgers a second (a fixed rate, so every run has the same
   baseline and latency has a defined start). For each subscriber count, a child process opens
   that many connections (one asyncio loop, `websockets`), each subscribed to every event; once
   all are subscribed and `--warmup` seconds have passed, a `--window`-second window is measured:
   events and frames received, ledgers and events the follower published (its status at both
   ends), disconnects and gaps; then the subscribers stay until they have every ledger published
   in the window (at most `--grace` s), so late frames are measured, not cut off. Latency is
   ledger closed in the feed -> frame received; both are CLOCK_MONOTONIC readings, one clock for
   every process of the machine.

Before each run the benchmark waits for the machine to be idle for 2 s (the app keeps serving
requests a client gave up on).
Authentication is off (`security.dev_mode`, loopback only) and so are the per-address rate limits
(`rate_per_ip: 0`, which dev mode leaves on) and the WebSocket per-address cap (`ws_max_per_ip`):
all clients come from 127.0.0.1, and this measures the app, not the key check or the limiter.
The app, the feed and the clients share the machine's cores; CPU seconds per process group are
sampled from /proc over each measured window (Linux only) to show who used them.

    python -m benchmarks.live_bench [--rate 4] [--history 480] [--window 20] [--rest-seconds 8] [--parts rest fanout]

Results (with the machine's description) go to benchmarks/results/live_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import itertools
import json
import logging
import multiprocessing
import os
import random
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import RESULTS, machine, process_tree, sandbox_lake

APP = "live-bench"
COMMIT_EVERY = 12  # the app's default commit cell
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


# ---- the feed --------------------------------------------------------------------------------
class Feed:
    """A getLedgers server over pre-generated ledgers: `history` of them served from the start, the
    rest closed at `rate` per second (on a fixed schedule, so a late close does not lower the rate)
    while running. Records when each ledger became visible, for latency."""

    def __init__(self, ledgers: list[tuple[int, bytes]], history: int) -> None:
        from obsrvr_ray.network import SANDBOX
        from obsrvr_ray.rpc_server import LedgerArchive, RpcServer

        self.archive = LedgerArchive()
        self.archive.add_all(meta for _, meta in ledgers[:history])
        self.pending = collections.deque(ledgers[history:])
        self.closed_at: dict[int, float] = {}
        self.server = RpcServer(self.archive, SANDBOX).start()
        self.rate = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed", daemon=True)
        self._thread.start()

    @property
    def latest(self) -> int:
        return self.archive.window()[1]

    def run(self, rate: float) -> None:
        self.rate = rate
        self._wake.set()

    def _run(self) -> None:
        self._wake.wait()
        began, closed = time.monotonic(), 0
        while not self._stop.is_set() and self.pending:
            delay = began + closed / self.rate - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            seq, meta = self.pending.popleft()
            self.archive.add(meta)
            self.closed_at[seq] = time.monotonic()
            closed += 1

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.server.stop()


# ---- CPU per process group ------------------------------------------------------------------
def _group(pid: int, clients: set[int]) -> str:
    if pid == os.getpid():
        return "bench (driver + feed)"
    if pid in clients:
        return "clients"
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "ray other"
    for needle, name in ((f"ServeReplica:{APP}:Api", "Api replica"), (f"ServeReplica:{APP}:Follower", "Follower"),
                         (f"ServeReplica:{APP}:Flight", "Flight"), ("ProxyActor", "Serve proxy"),
                         ("ServeController", "Serve controller")):
        if needle in title:
            return name
    return "ray other"  # GCS, raylet, log monitor, idle workers


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime, every thread
    except (OSError, IndexError, ValueError):
        return 0


def _machine_busy_ticks() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]  # guest time is in user
    return sum(values) - values[3] - values[4], sum(values)  # (busy, all), all cores


class CpuSample:
    """CPU seconds per process group between two readings, as % of one core."""

    def __init__(self, client_pid: int | None) -> None:
        tree = set(process_tree(os.getpid()))
        self.clients = set(process_tree(client_pid)) if client_pid else set()
        self.ticks = {pid: _cpu_ticks(pid) for pid in tree}
        self.busy, self.total = _machine_busy_ticks()
        self.at = time.monotonic()

    def until(self, later: CpuSample) -> dict:
        seconds = later.at - self.at
        groups: dict[str, int] = collections.Counter()
        for pid, ticks in later.ticks.items():
            groups[_group(pid, later.clients)] += ticks - self.ticks.get(pid, 0)
        out = {name: round(100 * t / CLOCK_TICK / seconds) for name, t in sorted(groups.items(), key=lambda g: -g[1])}
        busy = (later.busy - self.busy) / max(1, later.total - self.total) * os.cpu_count() * 100
        out["outside this run"] = max(0, round(busy - sum(out.values())))
        out["machine busy (all processes)"] = round(busy)
        return out


# ---- clients, each kind in a child process ------------------------------------------------------
def _rest_client(url: str, ledgers: tuple[int, int] | None, concurrency: int, warmup: float, seconds: float,
                 out: multiprocessing.Queue) -> None:
    out.put(asyncio.run(_rest_load(url, ledgers, concurrency, warmup, seconds, out)))


async def _rest_load(url: str, ledgers: tuple[int, int] | None, concurrency: int, warmup: float, seconds: float,
                     out: multiprocessing.Queue) -> dict:
    """Closed loop: each of `concurrency` workers sends its next request when the last one is answered.
    The window opens once every worker has had an answer (steady state, however slow the route) and
    at least `warmup` seconds have passed; requests answered inside it count. In-flight requests are
    awaited at the end so the next run starts on an idle server."""
    import aiohttp

    done: list[tuple[float, float, str, int]] = []  # (start, end, status, body bytes)
    answered = [asyncio.Event() for _ in range(concurrency)]
    window: list[float] = []  # [t1] once the window is open

    async def worker(k: int, session: aiohttp.ClientSession) -> None:
        pick = random.Random(k)
        while not window or time.monotonic() < window[0]:
            target = url if ledgers is None else f"{url}{pick.randint(*ledgers)}"
            start = time.monotonic()
            try:
                async with session.get(target) as response:
                    body = await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, body = type(exc).__name__, b""
            done.append((start, time.monotonic(), status, len(body)))
            answered[k].set()

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        workers = [asyncio.create_task(worker(k, session)) for k in range(concurrency)]
        began = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in answered)), 120)
        await asyncio.sleep(max(0.0, began + warmup - time.monotonic()))
        t0 = time.monotonic()
        window.append(t0 + seconds)
        out.put(("window", t0, t0 + seconds))
        await asyncio.gather(*workers)
    t1 = window[0]
    counted = [d for d in done if t0 <= d[1] <= t1]
    latencies = [end - start for start, end, status, _ in counted if status == "200"]
    statuses = collections.Counter(d[2] for d in counted)
    ok = len(latencies)
    return {"requests_per_s": round(ok / seconds, 1), "ok": ok, "p50_ms": _ms(_pct(latencies, 50)),
            "p99_ms": _ms(_pct(latencies, 99)), "warmup_seconds": round(t0 - began, 1),
            "mean_body_bytes": round(sum(d[3] for d in counted if d[2] == "200") / ok) if ok else None,
            "statuses": dict(statuses)}


def _ws_client(url: str, subscribers: int, warmup: float, window: float, grace: float,
               inbox: multiprocessing.Queue, out: multiprocessing.Queue) -> None:
    out.put(asyncio.run(_ws_load(url, subscribers, warmup, window, grace, inbox, out)))


async def _ws_load(url: str, subscribers: int, warmup: float, window: float, grace: float,
                   inbox: multiprocessing.Queue, out: multiprocessing.Queue) -> dict:
    """Subscribers on one event loop. After the window, stays connected until every subscriber has
    the last ledger published in it (the parent sends its number) or `grace` seconds have passed,
    so slow deliveries are measured, not cut off."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    records = [{"frames": [], "closing": None, "close": None, "error": None} for _ in range(subscribers)]
    connections: list = []
    subscribed = 0
    all_in = asyncio.Event()
    stopping = False

    async def subscriber(rec: dict) -> None:
        nonlocal subscribed
        try:
            ws = await connect(url, open_timeout=60, max_size=None, proxy=None)
        except Exception as exc:
            rec["error"] = f"connect: {type(exc).__name__}: {exc}"
            return
        connections.append(ws)
        rec["extensions"] = [type(e).__name__ for e in ws.protocol.extensions]
        try:
            await ws.send(json.dumps({"action": "subscribe"}))
            async for message in ws:
                received = time.monotonic()
                frame = json.loads(message)
                kind = frame.get("type")
                if kind == "events":
                    rec["frames"].append((frame["ledger"], received, len(frame["events"])))
                elif kind == "subscribed":
                    subscribed += 1
                    if subscribed == subscribers:
                        all_in.set()
                elif kind == "closing":
                    rec["closing"] = frame.get("reason")
        except ConnectionClosed:
            pass
        except Exception as exc:
            rec["error"] = f"{type(exc).__name__}: {exc}"
        if not stopping:  # closed by the server (or the network), not by us
            rec["close"] = (ws.close_code, ws.close_reason, time.monotonic())

    tasks = [asyncio.create_task(subscriber(rec)) for rec in records]
    began = time.monotonic()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_in.wait(), 90)
    connected = time.monotonic()
    await asyncio.sleep(warmup)
    t0 = time.monotonic()
    out.put(("window", t0, t0 + window))
    await asyncio.sleep(window)
    t1 = time.monotonic()
    out.put(("window_end", t1))
    last = await asyncio.get_running_loop().run_in_executor(None, inbox.get)
    while time.monotonic() - t1 < grace and not all(
            (rec["frames"] and rec["frames"][-1][0] >= last) or rec["close"] or rec["error"] for rec in records):
        await asyncio.sleep(0.1)
    stopping = True
    await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"connect_seconds": round(connected - began, 2), "subscribed": subscribed, "t0": t0, "t1": t1,
            "subscribers": records}


def _child(target, *args, inbox: bool = False) -> tuple[multiprocessing.Process, multiprocessing.Queue, object]:
    """`target(*args, [inbox,] out)` in a fresh interpreter: never fork a process holding a Ray driver."""
    ctx = multiprocessing.get_context("spawn")
    queue, to_child = ctx.Queue(), ctx.Queue() if inbox else None
    process = ctx.Process(target=target, args=(*args, *([to_child] if inbox else []), queue), daemon=True)
    process.start()
    return process, queue, to_child


# ---- the app -----------------------------------------------------------------------------------
class App:
    """The live app on a local Ray, and handles on what the benchmark reads from it."""

    def __init__(self, feed: Feed, dataset: Path) -> None:
        import ray
        from ray import serve
        from ray.serve.config import HTTPOptions

        from obsrvr_ray.serve.deployments import compose
        from obsrvr_ray.serve.serve_settings import live_config_from_args

        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        began = time.monotonic()
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=500 * 2**20,
                 logging_level="ERROR", log_to_driver=False)
        self.ray_seconds = time.monotonic() - began
        self.port = _free_port()
        self.settings = {
            "rpc_url": feed.server.url, "dataset": str(dataset), "start": 2, "commit_every": COMMIT_EVERY,
            "flight_port": _free_port(),
            "security": {"dev_mode": True, "rate_per_ip": 0, "rate_per_key": 0},
            "api": {"ws_max_per_ip": 1000, "ws_max_connections": 1000},
        }
        serve.start(http_options=HTTPOptions(host="127.0.0.1", port=self.port))
        serve.run(compose(live_config_from_args(self.settings)), name=APP, route_prefix="/", blocking=False)
        self.deploy_seconds = time.monotonic() - began - self.ray_seconds
        self.follower = serve.get_deployment_handle("Follower", app_name=APP)
        self.base = f"http://127.0.0.1:{self.port}"

    def status(self) -> dict:
        return self.follower.status.remote().result(timeout_s=30)

    def events_per_ledger(self, after: int) -> dict[int, int]:
        import pyarrow.compute as pc

        table = self.follower.recent.remote(after).result(timeout_s=30)
        counts = pc.value_counts(table["ledger_sequence"]).to_pylist()
        return {c["values"]: c["counts"] for c in counts}

    def metrics(self) -> dict[str, float]:
        import requests

        out = {}
        for line in requests.get(f"{self.base}/metrics", timeout=30).text.splitlines():
            if line.startswith("websocket_"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def stop(self) -> None:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def _wait(what: str, check, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


# ---- the measurements ------------------------------------------------------------------------------
def _settle(threshold: float = 35.0, limit: float = 60.0) -> float:
    """Seconds until the machine is idle again: work the app went on with after its caller gave up
    (a follower call the API stopped waiting for) would bill the next run."""
    began, quiet = time.monotonic(), 0
    while time.monotonic() - began < limit and quiet < 2:
        before = CpuSample(None)
        time.sleep(1.0)
        quiet = quiet + 1 if before.until(CpuSample(None))["machine busy (all processes)"] < threshold else 0
    return round(time.monotonic() - began, 1)


def measure_rest(app: App, route: str, url: str, ledgers: tuple[int, int] | None, concurrency: int,
                 seconds: float) -> dict:
    settle = _settle()
    process, queue, _ = _child(_rest_client, url, ledgers, concurrency, 1.0, seconds)
    _, t0, t1 = queue.get(timeout=180)
    time.sleep(max(0.0, t0 - time.monotonic()))
    before = CpuSample(process.pid)
    time.sleep(max(0.0, t1 - time.monotonic()))
    cpu = before.until(CpuSample(process.pid))
    result = queue.get(timeout=120)
    process.join(timeout=30)
    row = {"route": route, "concurrency": concurrency, "seconds": seconds, **result, "settled_seconds": settle,
           "cpu_percent_of_a_core": cpu}
    print(f"  {route:<34} c={concurrency:<3} {row['requests_per_s']:>8.1f} req/s  p50 {row['p50_ms']} ms  "
          f"p99 {row['p99_ms']} ms  {row['statuses']}", flush=True)
    return row


def probe_recent(app: App, committed: int, concurrency: int = 16) -> dict | None:
    """/v1/token-transfers merges the follower's newest, not yet committed, ledgers into the page:
    are they still in the answer when `concurrency` requests arrive at once?"""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    path = f"/v1/token-transfers?start_ledger={committed + 1}&limit=200"

    def get(_: int) -> tuple[int, float]:
        began = time.monotonic()
        response = requests.get(app.base + path, timeout=120)
        response.raise_for_status()
        return len(response.json()["rows"]), time.monotonic() - began

    _settle()
    alone = get(0)[0]
    if not alone:
        return None
    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(get, range(concurrency)))
    missing = [round(t, 2) for rows, t in answers if rows < alone]
    result = {"request": f"GET {path}", "rows_alone": alone, "concurrent_requests": concurrency,
              "answers_missing_rows": len(missing), "their_latency_s": sorted(missing),
              "all_latencies_s": sorted(round(t, 2) for _, t in answers)}
    print(f"  {concurrency} concurrent {path}: {len(missing)} answers without the {alone} uncommitted rows "
          f"(latencies {result['all_latencies_s']})", flush=True)
    return result


def measure_fanout(app: App, feed: Feed, subscribers: int, warmup: float, window: float, grace: float) -> dict:
    settle = _settle()
    metrics0 = app.metrics()
    process, queue, inbox = _child(_ws_client, f"ws://127.0.0.1:{app.port}/v1/subscribe", subscribers, warmup,
                                   window, grace, inbox=True)
    _, t0, _ = queue.get(timeout=180)
    status0, cpu0 = app.status(), CpuSample(process.pid)
    _, t1 = queue.get(timeout=window + 60)
    status1, cpu1 = app.status(), CpuSample(process.pid)
    first, last = status0["next_ledger"], status1["next_ledger"] - 1  # published in the window (within ms)
    per_ledger = app.events_per_ledger(first - 1)
    published = {seq: per_ledger.get(seq, 0) for seq in range(first, last + 1)}
    framed = [seq for seq, n in published.items() if n]  # a ledger without events sends no frame
    inbox.put(max(framed, default=last))
    result = queue.get(timeout=grace + 120)
    process.join(timeout=30)
    metrics1 = app.metrics()
    closed = dict(feed.closed_at)
    seconds = t1 - t0
    subs = result["subscribers"]
    in_window = [[f for f in s["frames"] if t0 <= f[1] <= t1] for s in subs]
    events = [sum(f[2] for f in frames) for frames in in_window]
    latencies, spreads, missing, complete = [], [], 0, 0
    halves: tuple[list[float], list[float]] = ([], [])  # by the ledger's place in the window: falling behind?
    middle = (first + last) / 2
    received: dict[int, list[float]] = collections.defaultdict(list)
    for s in subs:
        got = {f[0]: f[1] for f in s["frames"]}
        missing += sum(1 for seq in framed if seq not in got)
        complete += all(seq in got for seq in framed)
        for seq in framed:
            if seq in got and seq in closed:
                latencies.append(got[seq] - closed[seq])
                halves[seq > middle].append(got[seq] - closed[seq])
                received[seq].append(got[seq])
    if subscribers > 1:
        spreads = [max(times) - min(times) for times in received.values() if len(times) > 1]
    gaps = 0
    for s in subs:
        seqs = [f[0] for f in s["frames"]]
        gaps += sum(1 for a, b in itertools.pairwise(seqs) if b != a + 1)
    disconnects = collections.Counter(f"{s['close'][0]} {s['closing'] or s['close'][1]}".strip()
                                      for s in subs if s["close"])
    errors = collections.Counter(s["error"] for s in subs if s["error"])
    dropped = {k.split('"')[1]: v - metrics0.get(k, 0) for k, v in metrics1.items()
               if k.startswith("websocket_dropped_total{") and v - metrics0.get(k, 0)}
    published_events = sum(published.values())
    row = {
        "subscribers": subscribers, "subscribed": result["subscribed"], "connect_seconds": result["connect_seconds"],
        "settled_seconds": settle,
        "window_seconds": round(seconds, 2),
        "feed_closed_ledgers_per_s": round(sum(1 for t in closed.values() if t0 <= t <= t1) / seconds, 2),
        "published_ledgers_per_s": round(len(published) / seconds, 2),
        "published_events_per_s": round(published_events / seconds, 1),
        "delivered_events_per_s": round(sum(events) / seconds, 1),
        "delivered_events_per_s_per_subscriber": {
            "mean": round(sum(events) / subscribers / seconds, 1), "min": round(min(events) / seconds, 1),
            "max": round(max(events) / seconds, 1)},
        "delivered_frames_per_s": round(sum(len(f) for f in in_window) / seconds, 1),
        "delivered_over_subscribers_x_published": round(sum(events) / (subscribers * published_events), 3)
        if published_events else None,
        "subscribers_with_every_published_ledger": complete,
        "ledgers_missed": missing,  # (subscriber, ledger) pairs not received by the end of the grace period
        "gaps_in_sequence": gaps,
        "disconnects_by_server": dict(disconnects), "client_errors": dict(errors), "server_dropped": dropped,
        "server_events_sent": metrics1.get("websocket_events_sent_total", 0)
        - metrics0.get("websocket_events_sent_total", 0),
        "latency_close_to_receive_ms": {"min": _ms(min(latencies, default=None)), "p50": _ms(_pct(latencies, 50)),
                                        "p99": _ms(_pct(latencies, 99)), "max": _ms(max(latencies, default=None)),
                                        "p50_first_half": _ms(_pct(halves[0], 50)),
                                        "p50_second_half": _ms(_pct(halves[1], 50)), "samples": len(latencies)},
        "fanout_spread_ms": {"p50": _ms(_pct(spreads, 50)), "p99": _ms(_pct(spreads, 99))} if spreads else None,
        "follower_lag_at_end": status1.get("lag"),
        "extensions": sorted({e for s in subs for e in s.get("extensions", [])}),
        "cpu_percent_of_a_core": cpu0.until(cpu1),
    }
    print(f"  {subscribers:>3} subscribers: published {row['published_ledgers_per_s']} ledgers/s "
          f"({row['published_events_per_s']} events/s), delivered {row['delivered_events_per_s']} events/s "
          f"(x{row['delivered_over_subscribers_x_published']} of subscribers x published), latency p50 "
          f"{row['latency_close_to_receive_ms']['p50']} ms p99 {row['latency_close_to_receive_ms']['p99']} ms, "
          f"disconnects {dict(disconnects)}", flush=True)
    return row


def _load_ledgers(work_dir: Path, count: int) -> list[tuple[int, bytes]]:
    """Sandbox ledgers 2.. from the generated lake the backfill benchmark also uses (cached)."""
    from obsrvr_ray.objectstore import LocalStore
    from obsrvr_ray.sources.lake_source import LakeSource

    lake = sandbox_lake(work_dir, max(count, 2000))
    return [(r.sequence, r.data) for r in LakeSource(LocalStore(lake)).records(2, count + 1)]


def _dataset_size(dataset: Path) -> dict:
    """The committed snapshot's token transfers (the Delta table at <dataset>/token_transfers)."""
    from obsrvr_ray.query import TableReader

    snapshot = TableReader(str(dataset)).tables.table("token_transfers")
    return {"token_transfer_rows": TableReader(str(dataset)).read("token_transfers").num_rows,
            "token_transfer_files": len(snapshot.file_uris()),
            "files_all_tables": sum(1 for _ in dataset.rglob("*.parquet"))}


def _table(result: dict) -> str:
    lines = ["", "REST: requests/s   latency p50 / p99 ms",
             f"{'route':<34}" + "".join(f"{'c=' + str(c):>26}" for c in result["settings"]["concurrency"])]
    by_route: dict[str, list[dict]] = collections.defaultdict(list)
    for row in result["rest"]:
        by_route[row["route"]].append(row)
    for route, rows in by_route.items():
        lines.append(f"{route:<34}" + "".join(f"{r['requests_per_s']:>9.1f} {r['p50_ms']!s:>7} / {r['p99_ms']!s:<7}"
                                              for r in rows))
    lines += ["", f"WebSocket fan-out, feed at {result['settings']['rate']} ledgers/s, "
                  f"{result['settings']['window']:.0f} s window; latency: ledger closed -> frame received, ms",
              f"{'subs':>4} {'published':>10} {'delivered':>10} {'per sub':>8} {'ratio':>6} {'complete':>9} "
              f"{'lat min':>8} {'p50':>7} {'p99':>7} {'p50 1st/2nd half':>17} {'spread p99':>10} {'closed':>6}",
              f"{'':>4} {'events/s':>10} {'events/s':>10} {'events/s':>8}"]
    for r in result["fanout"]:
        lat = r["latency_close_to_receive_ms"]
        spread = (r["fanout_spread_ms"] or {}).get("p99")
        lines.append(f"{r['subscribers']:>4} {r['published_events_per_s']:>10} {r['delivered_events_per_s']:>10} "
                     f"{r['delivered_events_per_s_per_subscriber']['mean']:>8} "
                     f"{r['delivered_over_subscribers_x_published']!s:>6} "
                     f"{r['subscribers_with_every_published_ledger']:>4}/{r['subscribers']:<4} "
                     f"{lat['min']!s:>8} {lat['p50']!s:>7} {lat['p99']!s:>7} "
                     f"{lat['p50_first_half']!s:>8}/{lat['p50_second_half']!s:<8} {spread!s:>10} "
                     f"{sum(r['disconnects_by_server'].values()):>6}")
    return "\n".join(lines)


def goals(result: dict) -> dict:
    """The live path's targets (issue 16) next to what this run measured."""
    by_subs = {r["subscribers"]: r["latency_close_to_receive_ms"] for r in result["fanout"]}
    rest = {(r["route"], r["concurrency"]): r["requests_per_s"] for r in result["rest"]}
    probe, transfers = rest.get(("GET /health/live", 1)), rest.get(("GET /v1/token-transfers?limit=100", 1))
    return {
        "one_subscriber_p50_ms": {"measured": (by_subs.get(1) or {}).get("p50"), "goal_below": 200},
        "hundred_subscribers_p99_ms": {"measured": (by_subs.get(100) or {}).get("p99"), "goal_below": 500},
        "rest_transfers_over_probe_at_c1": {"measured": round(transfers / probe, 3) if probe and transfers else None,
                                            "goal_at_least": 0.7},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=4.0, help="ledgers/s the feed closes during the fan-out runs")
    parser.add_argument("--history", type=int, default=480, help="ledgers served from the start (the REST dataset)")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per subscriber count")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after all subscribed, not measured")
    parser.add_argument("--grace", type=float, default=30.0,
                        help="at most this many seconds after the window for frames of its ledgers still in flight")
    parser.add_argument("--rest-seconds", type=float, default=8.0, help="seconds measured per route and concurrency")
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "obsrvr-bench")
    parser.add_argument("--parts", nargs="+", choices=("rest", "fanout"), default=["rest", "fanout"],
                        help="what to measure (a REST-only run takes a few minutes instead of ten)")
    args = parser.parse_args()
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a throwaway local cluster: no token
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    args.work_dir.mkdir(parents=True, exist_ok=True)
    per_run = args.warmup + args.window + args.grace + 60  # the feed runs on while each run waits for an idle machine
    needed = args.history + int(args.rate * per_run * len(args.subscribers)) + 50
    ledgers = _load_ledgers(args.work_dir, needed)
    dataset = args.work_dir / "live-bench-dataset"
    shutil.rmtree(dataset, ignore_errors=True)

    feed = Feed(ledgers, args.history)
    app = App(feed, dataset)
    try:
        print(f"ray {app.ray_seconds:.1f} s, app deployed {app.deploy_seconds:.1f} s; catching up "
              f"{args.history} ledgers", flush=True)
        began, first = time.monotonic(), app.status()["next_ledger"]
        last = feed.latest
        cell_end = (last + 1) // COMMIT_EVERY * COMMIT_EVERY - 1
        _wait("the follower to catch up", lambda: app.status()["next_ledger"] > last
              and app.status()["committed_through"] >= cell_end, timeout=300, interval=0.2)
        catch_up = time.monotonic() - began
        status = app.status()
        dataset_info = {"committed_through": status["committed_through"], **_dataset_size(dataset)}
        print(f"caught up {last + 1 - first} ledgers in {catch_up:.1f} s; dataset {dataset_info}", flush=True)

        rest, probe, fanout = [], None, []
        routes = [("GET /health/live", f"{app.base}/health/live", None),
                  ("GET /v1/token-transfers?limit=100", f"{app.base}/v1/token-transfers?limit=100", None),
                  ("GET /v1/ledgers/{seq}", f"{app.base}/v1/ledgers/", (2, status["committed_through"]))]
        if "rest" in args.parts:
            print("REST", flush=True)
            rest = [measure_rest(app, name, url, ledger_range, c, args.rest_seconds)
                    for name, url, ledger_range in routes for c in args.concurrency]
            probe = probe_recent(app, status["committed_through"])

        if "fanout" in args.parts:
            print(f"WebSocket fan-out, feed at {args.rate} ledgers/s", flush=True)
            feed.run(args.rate)
            fanout = [measure_fanout(app, feed, n, args.warmup, args.window, args.grace) for n in args.subscribers]
            if not feed.pending:
                print("warning: the feed ran out of ledgers during the runs", flush=True)
    finally:
        app.stop()
        feed.stop()

    result = {
        "benchmark": "live", "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
        "settings": {"rate": args.rate, "history": args.history, "window": args.window, "warmup": args.warmup,
                     "grace": args.grace, "rest_seconds": args.rest_seconds, "subscribers": args.subscribers,
                     "concurrency": args.concurrency, "parts": args.parts,
                     "app_args": {k: v for k, v in app.settings.items()
                                  if k not in ("rpc_url", "dataset", "flight_port")}},
        "setup": {"ray_start_seconds": round(app.ray_seconds, 1), "deploy_seconds": round(app.deploy_seconds, 1),
                  "catch_up_seconds": round(catch_up, 1),
                  "catch_up_ledgers": last + 1 - first,
                  "catch_up_ledgers_per_s": round((last + 1 - first) / catch_up, 1), "dataset": dataset_info},
        "rest": rest, "rest_recent_probe": probe, "fanout": fanout,
    }
    result["goals"] = goals(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "live_bench.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(_table(result), "\n\ngoals:", json.dumps(result["goals"]), f"\n\nwritten to {path}")


if __name__ == "__main__":
    main()
