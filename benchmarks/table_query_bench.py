"""Query latency against the number of commits: REST `/v1/token-transfers?account=...` and
`?asset=...` (limit 100) over a token_transfers Delta table after 100, 1,000 and 5,000 live-style
commits, before and after compaction.

The table is grown the way the live follower grows it: one commit per 12-ledger cell (the
follower's default grid, cells [12k, 12k + 11]), writer "live", partitioned by date. Its rows are
real extractions: sandbox ledgers are generated once (`--template-ledgers`, 240 = 20 cells) and
extracted (`build_commit`, as the follower's extraction does); cell k reuses template cell k % 20
with ledger sequences, TOIDs and close times shifted forward by whole template lengths, so
sequences keep increasing across the run (~29 rows a ledger, ~350 a commit; 5 s between ledgers,
so 5,000 commits span 3.5 days: 4 date partitions). Transaction hashes repeat across template
cycles; nothing read here keys on them.

`--commit transfers` (the default) makes, per cell, exactly the token_transfers commit that
`TableSet.commit_chunk` makes (the same `TableSet._commit` call: partition columns, app
transaction, commit metadata, writer properties) and nothing else. `--commit chunk` runs
`commit_chunk` itself, with the analytics partials as the follower computes them: five Delta
commits a cell (token_transfers, volume_partials, largest_partials, failures, chunks). The query
reads only token_transfers, whose log and files are the same either way.

Measured at each stop: the app from `create_app` (auth off: `SecuritySettings(dev_mode=True)`,
rate limits off; an empty live view: no follower, `recent` returns no rows) served by uvicorn in a
child process on loopback, one keep-alive client, `--warmup` requests then up to `--requests`
timed ones per query (fewer once `--budget` seconds have passed, never fewer than `--min-samples`:
the slow points cost seconds a request); then the same queries through `TableReader.transfers()`
in this process; then one instrumented run of the reader's steps (log update, add actions,
`to_pyarrow_dataset`, fragment listing, Parquet reads, sort) to show where the time goes. The
server's reader, like the live app's, stays up across stops and catches up on the log itself.

Stops: 100 commits; a copy of that table compacted (`maintenance.compact`, which also writes a
checkpoint; served by a second server) so both sides of the target are in one run; 1,000; 5,000;
5,000 compacted; 5,000 compacted and vacuumed (retention 0 h, so the replaced files go now).
Delta writes a checkpoint every 100 commits by default, so the uncompacted stops read a
checkpoint plus at most 99 JSON commits. Ratios are p50 / p50 at 100 commits in the same run.

Growing the table is most of the run: a delta-rs append costs more the more files the table's
snapshot holds (measured: ~18 ms a commit at 100 files, ~150 ms at 1,000, ~730 ms at 5,000 on the
2-vCPU machine of the README), so the default stops took 35 minutes there, 29 of them growing
from 1,000 to 5,000 commits; `--stops 100 1000` is a few minutes.

    python -m benchmarks.table_query_bench   # --stops 100 1000 5000 --requests 30 --warmup 3 --budget 20

Results (with the machine's description) go to benchmarks/results/table_query_bench.json.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.common import RESULTS, machine

CELL = 12  # ledgers per commit: the follower's default commit_every
FIRST = 12  # the first ledger: the start of a cell of the follower's grid
LEDGER_SECONDS = 5  # the sandbox's close interval
TRANSFERS = "token_transfers"
PARTITION_BY = ("date",)


def _pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the rows ----------------------------------------------------------------------------------
def _settings(root: Path):
    from obsrvr_ray.chunks.process import ChunkSettings
    from obsrvr_ray.network import SANDBOX
    from obsrvr_ray.pipeline import ExtractOptions
    from obsrvr_ray.sinks.layout import OutputSpec

    return ChunkSettings((TRANSFERS,), OutputSpec(str(root), partition_by=PARTITION_BY), ExtractOptions(SANDBOX))


def template_cells(ledgers: int, settings) -> list[pa.Table]:
    """Generated sandbox ledgers FIRST.., extracted as the follower extracts them, split into cells."""
    from obsrvr_ray.chunks.plan import Segment, WorkUnit
    from obsrvr_ray.chunks.process import build_commit
    from obsrvr_ray.chunks.raw import records_to_table
    from obsrvr_ray.sources.base import LedgerRecord
    from obsrvr_sandbox.generator import generate_ledgers

    records = [LedgerRecord(seq, f"sandbox/{seq}", meta) for seq, meta in generate_ledgers(ledgers, start=FIRST)]
    last = FIRST + ledgers - 1
    unit = WorkUnit((FIRST, last), 0, (Segment(FIRST, last, False),))
    commit = build_commit(unit, records_to_table(records), settings, writer="live")
    if commit.failures.num_rows:
        raise RuntimeError(f"the generated ledgers failed: {commit.failures.to_pylist()[:3]}")
    rows = commit.tables[TRANSFERS]
    return [rows.filter(pc.and_(pc.greater_equal(rows["ledger_sequence"], start),
                                pc.less(rows["ledger_sequence"], start + CELL)))
            for start in range(FIRST, last + 1, CELL)]


def shifted(rows: pa.Table, ledgers: int) -> pa.Table:
    """The rows as if closed `ledgers` ledgers later: sequence, TOIDs (ledger << 32) and close time."""
    if not ledgers:
        return rows
    for name, delta in (("ledger_sequence", ledgers), ("transaction_id", ledgers << 32),
                        ("operation_id", ledgers << 32)):
        moved = pc.add(rows[name], pa.scalar(delta, pa.int64()))
        rows = rows.set_column(rows.schema.get_field_index(name), name, moved)
    closed = pc.add(rows["closed_at"], pa.scalar(dt.timedelta(seconds=ledgers * LEDGER_SECONDS), pa.duration("us")))
    return rows.set_column(rows.schema.get_field_index("closed_at"), "closed_at", closed.cast(rows["closed_at"].type))


def pick_queries(cells: list[pa.Table]) -> tuple[str, str]:
    """The most frequent G account (sender or receiver) and the most frequent issued asset, as CODE:ISSUER."""
    rows = pa.concat_tables(cells)
    accounts = collections.Counter(a for a in rows["from"].to_pylist() + rows["to"].to_pylist()
                                   if a and a.startswith("G"))
    assets = collections.Counter(f"{c}:{i}" for c, i in zip(rows["asset_code"].to_pylist(),
                                                            rows["asset_issuer"].to_pylist(), strict=True) if c and i)
    return accounts.most_common(1)[0][0], assets.most_common(1)[0][0]


class Grower:
    """Commits cell after cell into one output, as the live follower does."""

    def __init__(self, root: Path, settings, cells: list[pa.Table], mode: str) -> None:
        from obsrvr_ray.chunks.job import output_shape
        from obsrvr_ray.table.tableset import TableSet

        self.tables = TableSet.at(str(root))
        self.tables.ensure(output_shape(settings, "live"), (TRANSFERS,))  # as the follower does
        self.settings, self.cells, self.mode = settings, cells, mode
        self.commits = 0

    def commit_next(self) -> None:
        from obsrvr_ray.analytics.transfers import hourly_partial, largest_partial
        from obsrvr_ray.schema import FAILURES
        from obsrvr_ray.table.partitioning import with_partition_columns
        from obsrvr_ray.table.tableset import ChunkCommit

        k = self.commits
        cycle, j = divmod(k, len(self.cells))
        rows = shifted(self.cells[j], cycle * len(self.cells) * CELL)
        first = FIRST + k * CELL
        analytics = self.mode == "chunk"
        commit = ChunkCommit((first, first + CELL - 1), 0, {TRANSFERS: rows}, FAILURES.empty_table(),
                             hourly_partial(rows) if analytics else None,
                             largest_partial(rows, self.settings.top_transfers) if analytics else None,
                             ledgers=CELL, events=rows.num_rows, writer="live")
        if self.mode == "chunk":
            outcome = self.tables.commit_chunk(commit, PARTITION_BY)
            done = outcome.committed_here
        else:  # the token_transfers step of commit_chunk, alone
            done = self.tables._commit(TRANSFERS, with_partition_columns(rows, TRANSFERS, PARTITION_BY), commit)
        if not done:
            raise RuntimeError(f"cell {first} was not committed")
        self.commits += 1

    def grow_to(self, commits: int) -> dict:
        """Commit up to `commits`; the rate, and the time a commit took over the last 100 (it grows with
        the files in the table's snapshot)."""
        began, start = time.monotonic(), self.commits
        last: collections.deque[float] = collections.deque(maxlen=100)
        while self.commits < commits:
            t0 = time.perf_counter()
            self.commit_next()
            last.append(time.perf_counter() - t0)
            if (self.commits - start) % 500 == 0:
                print(f"    {self.commits} commits, {(self.commits - start) / (time.monotonic() - began):.1f}/s, "
                      f"last 100: {sum(last) / len(last) * 1000:.0f} ms a commit", flush=True)
        seconds = time.monotonic() - began
        n = self.commits - start
        return {"commits": n, "seconds": round(seconds, 1), "commits_per_s": round(n / seconds, 1) if seconds else None,
                "ms_per_commit_last_100": _ms(sum(last) / len(last)) if last else None}


# ---- the server --------------------------------------------------------------------------------
class _NoLive:
    """The live view of an app without a follower: no status, no new ledgers, no recent rows."""

    async def status(self) -> dict | None:
        return None

    async def after(self, ledger: int, timeout: float) -> list:
        return []

    async def recent(self, after: int | None) -> pa.Table:
        from obsrvr_ray.schema import TOKEN_TRANSFERS

        return TOKEN_TRANSFERS.empty_table()


def _serve(root: str, port: int) -> None:
    """The child process: the REST app over `root`, as the Api deployment builds it, on loopback."""
    import uvicorn

    from obsrvr_ray.query import TableReader
    from obsrvr_ray.security.security_settings import SecuritySettings
    from obsrvr_ray.serve.api import ApiSettings, create_app
    from obsrvr_ray.serve.http_security import build_guard

    security = SecuritySettings(dev_mode=True, bind_hosts=("127.0.0.1",), rate_per_ip=0, rate_per_key=0)
    guard, routers, wrap = build_guard(security)
    app = wrap(create_app(TableReader(root), _NoLive(), guard, ApiSettings(), extra_routers=routers))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class Server:
    def __init__(self, root: Path) -> None:
        import requests

        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = multiprocessing.get_context("spawn").Process(target=_serve, args=(str(root), self.port),
                                                                    daemon=True)
        self.http = requests.Session()
        self.http.trust_env = False  # never a proxy between the client and loopback

    def __enter__(self) -> Server:
        self.process.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.http.get(f"{self.base}/health/live", timeout=2).status_code == 200:
                    return self
            except Exception:  # not listening yet
                pass
            if not self.process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app did not start")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        self.process.terminate()
        self.process.join(timeout=10)

    def transfers(self, params: dict) -> list[dict]:
        r = self.http.get(f"{self.base}/v1/token-transfers", params=params, timeout=600)
        r.raise_for_status()
        return r.json()["rows"]


# ---- measuring ---------------------------------------------------------------------------------
def series(call, warmup: int, requests: int, budget: float, min_samples: int) -> tuple[dict, object]:
    """Latency of `call`: up to `warmup` untimed calls (fewer once a third of the budget is spent, at
    least one), then up to `requests` timed ones (fewer once the budget is spent, at least `min_samples`)."""
    began = time.monotonic()
    warm = 0
    result = None
    while warm < warmup and (warm == 0 or time.monotonic() - began < budget / 3):
        result = call()
        warm += 1
    began = time.monotonic()
    times: list[float] = []
    while len(times) < requests and (len(times) < min_samples or time.monotonic() - began < budget):
        t0 = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - t0)
    return {"p50_ms": _ms(_pct(times, 50)), "p90_ms": _ms(_pct(times, 90)), "min_ms": _ms(min(times)),
            "max_ms": _ms(max(times)), "n": len(times), "warmup": warm}, result


def breakdown(reader, query) -> dict:
    """One run of TableReader.transfers' steps, each timed (mirrors obsrvr_ray/query.py)."""
    from urllib.parse import unquote

    from obsrvr_ray.query import ORDER
    from obsrvr_ray.schema import TOKEN_TRANSFERS

    t = time.perf_counter
    out: dict = {}
    a = t()
    snapshot = reader.tables.table(TRANSFERS, reader.as_of)  # update_incremental: the log's tail
    b = t()
    actions = pa.table(snapshot.get_add_actions(flatten=True))
    ranges = {p: (lo, hi) for p, lo, hi in zip(actions["path"].to_pylist(), actions["min.ledger_sequence"].to_pylist(),
                                              actions["max.ledger_sequence"].to_pylist(), strict=True)}
    ranges.update({unquote(p): r for p, r in ranges.items()})
    c = t()
    data = snapshot.to_pyarrow_dataset()
    d = t()
    chunks = sorted(((ranges[f.path], f) for f in data.get_fragments() if ranges.get(f.path, (None,))[0] is not None),
                    key=lambda item: item[0])
    e = t()
    expression = query.expression()
    parts, rows, read, scanned, stop_after = [], 0, 0, 0, None
    for (start, end), fragment in chunks:
        if stop_after is not None and start > stop_after:
            break
        raw = fragment.to_table(schema=data.schema, filter=expression)
        scanned += raw.num_rows
        part = query.apply(reader._normalize(raw, TRANSFERS))
        parts.append(part)
        read += 1
        rows += part.num_rows
        if stop_after is None and rows > query.limit:
            stop_after = end
    f = t()
    table = pa.concat_tables(parts) if parts else TOKEN_TRANSFERS.empty_table()
    table.take(pc.sort_indices(table, sort_keys=ORDER)).slice(0, query.limit)
    g = t()
    out = {"log_update_ms": _ms(b - a), "add_actions_ms": _ms(c - b), "to_pyarrow_dataset_ms": _ms(d - c),
           "fragments_listed_ms": _ms(e - d), "parquet_read_filter_ms": _ms(f - e), "sort_ms": _ms(g - f),
           "total_ms": _ms(g - a), "files": len(chunks), "files_read": read, "rows_scanned": scanned,
           "rows_matched": rows}
    return out


def table_state(root: Path) -> dict:
    """The token_transfers table: version, files in the snapshot, Parquet files on disk, rows, row groups."""
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    path = root / TRANSFERS
    table = DeltaTable(str(path))
    actions = pa.table(table.get_add_actions(flatten=True))
    state = {"version": table.version(), "files": actions.num_rows,
             "files_on_disk": sum(1 for f in path.rglob("*.parquet") if "_delta_log" not in f.parts),
             "rows": pc.sum(actions["num_records"]).as_py(), "bytes": pc.sum(actions["size_bytes"]).as_py(),
             "partitions": len(set(actions["partition.date"].to_pylist())),
             "checkpoints": sum(1 for _ in (path / "_delta_log").glob("*.checkpoint.parquet"))}
    if actions.num_rows <= 20:  # compacted: how the big files are laid out
        files = []
        for rel in actions["path"].to_pylist():
            meta = pq.ParquetFile(path / rel).metadata
            files.append({"rows": meta.num_rows, "row_groups": meta.num_row_groups,
                          "mib": round((path / rel).stat().st_size / 2**20, 1)})
        state["file_layout"] = files
    return state


def measure(label: str, root: Path, server: Server, queries: dict[str, dict], args) -> dict:
    from obsrvr_ray.query import TableReader, TransferQuery
    from obsrvr_ray.schema import TOKEN_TRANSFERS
    from obsrvr_ray.ttp.filters import EventFilter

    row: dict = {"stop": label, "table": table_state(root), "load_avg_1m": round(os.getloadavg()[0], 2),
                 "rest": {}, "direct": {}, "breakdown": {}}
    reader = TableReader(str(root))
    empty = TOKEN_TRANSFERS.empty_table()
    for name, params in queries.items():
        rest, rest_rows = series(lambda p=params: server.transfers(p), args.warmup, args.requests, args.budget,
                                 args.min_samples)
        query = TransferQuery(filter=EventFilter.of((), [params["asset"]] if "asset" in params else [],
                                                    [params["account"]] if "account" in params else []),
                              limit=params["limit"])
        direct, page = series(lambda q=query: reader.transfers(q, empty), args.warmup, args.requests, args.budget,
                              args.min_samples)
        keys = [(r["ledger_sequence"], r["event_index"]) for r in rest_rows]
        same = keys == list(zip(page.rows["ledger_sequence"].to_pylist(), page.rows["event_index"].to_pylist(),
                                strict=True))
        if len(keys) != params["limit"] or not same:
            raise RuntimeError(f"{label} {name}: REST gave {len(keys)} rows, the reader {page.rows.num_rows} "
                               f"(same: {same})")
        row["rest"][name], row["direct"][name] = rest, direct
        row["breakdown"][name] = breakdown(reader, query)
        b = row["breakdown"][name]
        print(f"  {label:<22} {name:<8} REST p50 {rest['p50_ms']:>8} p90 {rest['p90_ms']:>8} (n={rest['n']}) | "
              f"reader p50 {direct['p50_ms']:>8} | to_pyarrow_dataset {b['to_pyarrow_dataset_ms']} ms, "
              f"read {b['files_read']}/{b['files']} files {b['parquet_read_filter_ms']} ms", flush=True)
    return row


def ratios(stops: list[dict], base: str, key: str) -> None:
    """p50 / the p50 at stop `base`, as `key`, for each stop, query and side."""
    ref = next(s for s in stops if s["stop"] == base)
    for s in stops:
        for side in ("rest", "direct"):
            for name, r in s[side].items():
                r[key] = round(r["p50_ms"] / ref[side][name]["p50_ms"], 2)


def _table(result: dict) -> str:
    names = list(result["queries"])
    lines = ["", f"{'stop':<26}{'files':>7}{'version':>9}" + "".join(
        f"{'REST ' + n + ' p50/p90 ms':>26}{'x1st':>7}" for n in names) + "".join(
        f"{'reader ' + n + ' p50':>20}{'x1st':>7}" for n in names)]
    for s in result["stops"]:
        line = f"{s['stop']:<26}{s['table']['files']:>7}{s['table']['version']:>9}"
        for n in names:
            r = s["rest"][n]
            line += f"{str(r['p50_ms']) + ' / ' + str(r['p90_ms']):>26}{r['x_first']:>7}"
        for n in names:
            r = s["direct"][n]
            line += f"{r['p50_ms']:>20}{r['x_first']:>7}"
        lines.append(line)
    lines += ["", "where the reader's time goes (one instrumented run, ms):",
              f"{'stop':<26}{'query':<9}{'log':>7}{'add acts':>9}{'to_pyarrow_ds':>14}{'fragments':>10}"
              f"{'read+filter':>12}{'sort':>6}{'total':>8}{'files read':>12}{'rows scanned':>13}"]
    for s in result["stops"]:
        for n in names:
            b = s["breakdown"][n]
            lines.append(f"{s['stop']:<26}{n:<9}{b['log_update_ms']:>7}{b['add_actions_ms']:>9}"
                         f"{b['to_pyarrow_dataset_ms']:>14}{b['fragments_listed_ms']:>10}"
                         f"{b['parquet_read_filter_ms']:>12}{b['sort_ms']:>6}{b['total_ms']:>8}"
                         f"{str(b['files_read']) + '/' + str(b['files']):>12}{b['rows_scanned']:>13}")
    t = result["target"]
    lines += ["", f"target (REST p50 after compaction at {t['commits']} <= 2x the p50 at the first stop): "
                  + ", ".join(f"{n} {v['x_first']}x ({'met' if v['met'] else 'NOT met'}; "
                              f"{v['x_first_compacted']}x the compacted first stop)"
                              for n, v in t["rest"].items())]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stops", type=int, nargs="+", default=[100, 1000, 5000], help="commits at each stop")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per query and stop (at most)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests first (at most)")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of timed requests per series (soft)")
    parser.add_argument("--min-samples", type=int, default=5)
    parser.add_argument("--template-ledgers", type=int, default=240, help="sandbox ledgers generated (x12)")
    parser.add_argument("--commit", choices=("transfers", "chunk"), default="transfers",
                        help="transfers: the token_transfers commit of commit_chunk alone; chunk: commit_chunk")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "obsrvr-bench")
    parser.add_argument("--out", type=Path, default=RESULTS / "table_query_bench.json")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the app's process on the way out
    if args.template_ledgers % CELL:
        parser.error(f"--template-ledgers must be a multiple of {CELL}")
    stops = sorted(args.stops)
    import deltalake

    from obsrvr_ray.table.maintenance import compact, vacuum
    from obsrvr_ray.table.tableset import TableSet

    began = time.monotonic()
    work = args.work_dir / "table-query-bench"
    shutil.rmtree(work, ignore_errors=True)
    root, small = work / "grown", work / f"at-{stops[0]}-compacted"
    settings = _settings(root)
    t0 = time.monotonic()
    cells = template_cells(args.template_ledgers, settings)
    account, asset = pick_queries(cells)
    rows_per_cell = sum(c.num_rows for c in cells) / len(cells)
    print(f"template: {args.template_ledgers} ledgers, {rows_per_cell:.0f} rows a cell "
          f"({time.monotonic() - t0:.1f} s); account {account}, asset {asset}", flush=True)
    queries = {"account": {"account": account, "limit": 100}, "asset": {"asset": asset, "limit": 100}}

    grower = Grower(root, settings, cells, args.commit)
    out_stops, growth, maintenance = [], [], {}
    with Server(root) as server:
        for n in stops:
            print(f"growing to {n} commits", flush=True)
            growth.append({"to": n, **grower.grow_to(n)})
            print(f"    {growth[-1]}", flush=True)
            out_stops.append(measure(f"{n} commits", root, server, queries, args))
            if n == stops[0]:
                shutil.copytree(root, small)
                t0 = time.monotonic()
                done = compact(TableSet.at(str(small)), (TRANSFERS,))
                maintenance[f"compact at {n}"] = {"seconds": round(time.monotonic() - t0, 1),
                                                  "tables": [vars(c) for c in done]}
                with Server(small) as second:
                    out_stops.append(measure(f"{n} compacted", small, second, queries, args))
        n = stops[-1]
        t0 = time.monotonic()
        done = compact(grower.tables, (TRANSFERS,))
        maintenance[f"compact at {n}"] = {"seconds": round(time.monotonic() - t0, 1), "tables": [vars(c) for c in done]}
        print(f"    compacted: {maintenance[f'compact at {n}']}", flush=True)
        out_stops.append(measure(f"{n} compacted", root, server, queries, args))
        t0 = time.monotonic()
        removed = vacuum(grower.tables, (TRANSFERS,), retention_hours=0)
        maintenance[f"vacuum at {n}"] = {"seconds": round(time.monotonic() - t0, 1),
                                         "files_removed": sum(len(v) for v in removed.values())}
        print(f"    vacuumed: {maintenance[f'vacuum at {n}']}", flush=True)
        out_stops.append(measure(f"{n} compacted+vacuumed", root, server, queries, args))

    base = f"{stops[0]} commits"
    ratios(out_stops, base, "x_first")  # against the first stop (100 commits), as committed
    ratios(out_stops, f"{stops[0]} compacted", "x_first_compacted")
    final = next(s for s in out_stops if s["stop"] == f"{stops[-1]} compacted")
    result = {
        "benchmark": "table_query", "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {**machine(), "deltalake": deltalake.__version__}, "seconds": round(time.monotonic() - began, 1),
        "settings": {"stops": stops, "requests": args.requests, "warmup": args.warmup, "budget": args.budget,
                     "min_samples": args.min_samples, "template_ledgers": args.template_ledgers,
                     "rows_per_commit": round(rows_per_cell), "ledgers_per_commit": CELL, "commit": args.commit,
                     "partition_by": list(PARTITION_BY)},
        "queries": {name: "/v1/token-transfers?" + "&".join(f"{k}={v}" for k, v in p.items())
                    for name, p in queries.items()},
        "growth": growth, "maintenance": maintenance, "stops": out_stops,
        "target": {"commits": stops[-1], "rest": {
            name: {"x_first": r["x_first"], "x_first_compacted": r["x_first_compacted"], "met": r["x_first"] <= 2.0}
            for name, r in final["rest"].items()}},
    }
    path = args.out
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(_table(result), f"\n\nwritten to {path} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
