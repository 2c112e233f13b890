"""Delta Lake (deltalake, delta-rs) against Apache Iceberg (pyiceberg, SQL catalog on SQLite) for the
token-transfer output, measured on this machine in one run:

1. commit rate: `--commits` small appends (`--rows` rows of the real TOKEN_TRANSFERS schema each)
   to a local table; then the time of a filtered read (one `from` account) right after them and
   after compaction (deltalake: optimize.compact + vacuum; pyiceberg has no compaction, so the
   only way to fewer files is rewriting the whole table with Table.overwrite, reported as such);
   plus time travel, delete, restore/rollback and retention on the same tables;
2. concurrent writers: `--writers` threads each appending `--appends` times to the same table on
   moto's S3 server (a subprocess on loopback); commits attempted, committed, lost, retries,
   errors, rows present against rows expected;
3. idempotent commits: "chunk X generation G committed" recorded in the commit itself (Delta:
   an app transaction; Iceberg: snapshot summary properties), and whether a second writer from a
   stale snapshot that commits the same chunk is refused.

    python -m benchmarks.table_formats [--commits 200] [--rows 50] [--writers 2] [--appends 20]

Results go to benchmarks/results/table_formats.json. Temporary tables live in a temporary
directory that is removed at the end; moto is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import EqualTo

from benchmarks.common import RESULTS, machine
from obsrvr_ray.schema import TOKEN_TRANSFERS

ACCOUNTS = 400  # distinct account values; a filtered read matches ~1/ACCOUNTS of the rows
TABLE = "obsrvr.token_transfers"
START = datetime(2026, 1, 1, tzinfo=UTC)


# --- data ------------------------------------------------------------------------------------------


def account(i: int) -> str:
    return "G" + f"{i:06d}".rjust(55, "A")


def batch(rng: random.Random, commit: int, rows: int) -> pa.Table:
    """`rows` token transfers of ledger 1000 + `commit`, every column of TOKEN_TRANSFERS filled."""
    ledger = 1000 + commit
    cols: dict[str, list] = {name: [] for name in TOKEN_TRANSFERS.names}
    for i in range(rows):
        tx = rng.randrange(1, 200)
        amount = rng.randrange(1, 10**12)
        code = rng.choice(["native", "USDC", "EURC", "AQUA"])
        cols["transaction_hash"].append(f"{rng.getrandbits(256):064x}")
        cols["transaction_id"].append((ledger << 32) | (tx << 12))
        cols["operation_id"].append((ledger << 32) | (tx << 12) | 1)
        cols["event_topic"].append(rng.choice(["transfer", "transfer", "transfer", "mint", "burn", "fee"]))
        cols["from"].append(account(rng.randrange(ACCOUNTS)))
        cols["to"].append(account(rng.randrange(ACCOUNTS)))
        cols["asset"].append("native" if code == "native" else f"credit_alphanum4:{code}:{account(7)}")
        cols["asset_type"].append("native" if code == "native" else "credit_alphanum4")
        cols["asset_code"].append(None if code == "native" else code)
        cols["asset_issuer"].append(None if code == "native" else account(7))
        cols["amount_raw"].append(str(amount))
        cols["amount"].append(amount * 1e-7)
        cols["contract_id"].append("C" + f"{rng.getrandbits(200):055x}"[:55].upper())
        cols["ledger_sequence"].append(ledger)
        cols["closed_at"].append(START + timedelta(seconds=5 * ledger))
        cols["to_muxed"].append(None)
        cols["to_muxed_id"].append(None)
        cols["transaction_index"].append(tx)
        cols["operation_index"].append(1)
        cols["event_index"].append(i)
    return pa.Table.from_pydict(cols, schema=TOKEN_TRANSFERS)


def batches(commits: int, rows: int, seed: int = 7) -> list[pa.Table]:
    rng = random.Random(seed)
    return [batch(rng, i, rows) for i in range(commits)]


def first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else ""


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median_ms(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t, out = timed(fn)
        times.append(t)
    return ms(statistics.median(times)), out


def latencies(times: list[float]) -> dict:
    n = len(times)
    return {
        "commits": n,
        "seconds": round(sum(times), 3),
        "commits_per_s": round(n / sum(times), 1),
        "p50_ms": ms(statistics.median(times)),
        "p95_ms": ms(sorted(times)[int(0.95 * (n - 1))]),
        "first_10_mean_ms": ms(statistics.mean(times[:10])),
        "last_10_mean_ms": ms(statistics.mean(times[-10:])),
    }


def tree(root: Path) -> dict:
    files = [p for p in root.rglob("*") if p.is_file()]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def duckdb_count(dataset: pds.Dataset, who: str) -> int:
    """DuckDB reading the snapshot as a pyarrow dataset (its delta/iceberg extensions cannot be
    downloaded here): the filter is pushed into the dataset scan."""
    con = duckdb.connect()
    con.register("t", dataset)
    (n,) = con.execute('select count(*) from t where "from" = ?', [who]).fetchone()
    con.close()
    return n


# --- 1. commit rate, reads, compaction, lifecycle --------------------------------------------------


def delta_local(root: Path, data: list[pa.Table], who: str, expected: int, repeats: int) -> dict:
    uri = str(root / "delta")
    DeltaTable.create(uri, schema=TOKEN_TRANSFERS)
    dt = DeltaTable(uri)
    times = []
    for b in data:
        t, _ = timed(lambda b=b: write_deltalake(dt, b, mode="append"))
        times.append(t)
    out: dict = {"append": latencies(times), "version": dt.version()}
    out["storage_after_commits"] = {"_delta_log": tree(Path(uri) / "_delta_log"), "all": tree(Path(uri))}

    def read() -> int:
        return DeltaTable(uri).to_pyarrow_dataset().to_table(filter=pc.field("from") == who).num_rows

    def read_state(label: str) -> None:
        open_ms, _ = median_ms(lambda: DeltaTable(uri), repeats)
        read_ms, n = median_ms(read, repeats)
        files = [f.removeprefix("file://") for f in DeltaTable(uri).file_uris()]
        ddb_ms, n_ddb = median_ms(lambda: duckdb_count(DeltaTable(uri).to_pyarrow_dataset(), who), repeats)
        plain_ms, n_plain = median_ms(
            lambda: pds.dataset(files, format="parquet").to_table(filter=pc.field("from") == who).num_rows, repeats
        )
        assert n == n_ddb == n_plain == expected, (label, n, n_ddb, n_plain, expected)
        out[label] = {"data_files": len(files), "open_ms": open_ms, "filtered_read_ms": read_ms,
                      "duckdb_filtered_count_ms": ddb_ms, "plain_pyarrow_same_files_ms": plain_ms, "rows_matched": n}

    read_state("read_after_commits")
    tt_ms, tt_rows = median_ms(lambda: DeltaTable(uri, version=10).to_pyarrow_table().num_rows, 1)
    out["time_travel_version_10"] = {"ms": tt_ms, "rows": tt_rows, "expected": 10 * data[0].num_rows}

    dt = DeltaTable(uri)
    t, metrics = timed(dt.optimize.compact)
    out["compact"] = {"seconds": round(t, 3), "files_added": metrics["numFilesAdded"],
                      "files_removed": metrics["numFilesRemoved"]}
    read_state("read_after_compact")
    dt = DeltaTable(uri)
    t, removed = timed(lambda: dt.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False))
    out["vacuum"] = {"seconds": round(t, 3), "files_deleted": len(removed), "storage": tree(Path(uri))}
    read_state("read_after_vacuum")
    try:
        DeltaTable(uri, version=10).to_pyarrow_table()
        out["time_travel_version_10_after_vacuum"] = "read"
    except Exception as e:  # the files of version 10 are gone
        out["time_travel_version_10_after_vacuum"] = f"failed: {type(e).__name__}: {first_line(e)}"

    dt = DeltaTable(uri)
    before = dt.version()
    total = dt.to_pyarrow_table().num_rows
    t, metrics = timed(lambda: dt.delete(f"\"from\" = '{who}'"))
    after_delete = DeltaTable(uri).to_pyarrow_table().num_rows
    t2, _ = timed(lambda: DeltaTable(uri).restore(before))
    restored = DeltaTable(uri).to_pyarrow_table().num_rows
    out["delete_then_restore"] = {
        "rows_before": total, "delete_seconds": round(t, 3), "rows_deleted": metrics.get("num_deleted_rows"),
        "rows_after_delete": after_delete, "restore_seconds": round(t2, 3), "rows_after_restore": restored,
    }
    return out


def iceberg_catalog(root: Path, warehouse: str, **props: str) -> SqlCatalog:
    return SqlCatalog("bench", uri=f"sqlite:///{root / 'catalog.db'}", warehouse=warehouse, **props)


def iceberg_local(root: Path, data: list[pa.Table], who: str, expected: int, repeats: int) -> dict:
    wh = root / "iceberg"
    wh.mkdir()
    cat = iceberg_catalog(wh, f"file://{wh}")
    cat.create_namespace("obsrvr")
    tbl = cat.create_table(TABLE, schema=TOKEN_TRANSFERS)
    times = []
    for b in data:
        t, _ = timed(lambda b=b: tbl.append(b))
        times.append(t)
    out: dict = {"append": latencies(times), "snapshots": len(tbl.snapshots())}
    meta = [p for p in wh.rglob("*") if p.is_file() and "/metadata/" in str(p)]
    newest_json = max((p for p in meta if p.name.endswith(".metadata.json")), key=lambda p: p.stat().st_mtime)
    out["storage_after_commits"] = {
        "metadata": {"files": len(meta), "bytes": sum(p.stat().st_size for p in meta)},
        "newest_metadata_json_bytes": newest_json.stat().st_size,
        "manifests_in_current_snapshot": len(tbl.current_snapshot().manifests(tbl.io)),
        "all": tree(wh),
    }

    def scan_files() -> list[str]:
        tasks = list(cat.load_table(TABLE).scan().plan_files())
        assert not any(t.delete_files for t in tasks)  # plain data files: a pyarrow dataset of them is the snapshot
        return [t.file.file_path.removeprefix("file://") for t in tasks]

    def read() -> int:
        return cat.load_table(TABLE).scan(row_filter=EqualTo("from", who)).to_arrow().num_rows

    def read_state(label: str) -> None:
        open_ms, _ = median_ms(lambda: cat.load_table(TABLE), repeats)
        plan_ms, files = median_ms(scan_files, repeats)
        read_ms, n = median_ms(read, repeats)
        ddb_ms, n_ddb = median_ms(lambda: duckdb_count(pds.dataset(scan_files(), format="parquet"), who), repeats)
        plain_ms, n_plain = median_ms(
            lambda: pds.dataset(files, format="parquet").to_table(filter=pc.field("from") == who).num_rows, repeats
        )
        assert n == n_ddb == n_plain == expected, (label, n, n_ddb, n_plain, expected)
        out[label] = {"data_files": len(files), "open_ms": open_ms, "plan_files_ms": plan_ms,
                      "filtered_read_ms": read_ms, "duckdb_filtered_count_ms": ddb_ms,
                      "plain_pyarrow_same_files_ms": plain_ms, "rows_matched": n}

    read_state("read_after_commits")
    snaps = cat.load_table(TABLE).snapshots()
    tt_ms, tt_rows = median_ms(lambda: cat.load_table(TABLE).scan(snapshot_id=snaps[9].snapshot_id)
                               .to_arrow().num_rows, 1)
    out["time_travel_snapshot_10"] = {"ms": tt_ms, "rows": tt_rows, "expected": 10 * data[0].num_rows}

    out["compact"] = ("not available: pyiceberg 0.12.0 has no rewrite_data_files / compaction API "
                      "(Table.maintenance offers expire_snapshots only)")
    tbl = cat.load_table(TABLE)
    t, _ = timed(lambda: tbl.overwrite(tbl.scan().to_arrow()))
    out["full_rewrite_by_overwrite"] = {
        "note": "not compaction: reads the whole table and replaces it in one snapshot (all rows in memory)",
        "seconds": round(t, 3),
    }
    read_state("read_after_full_rewrite")

    tbl = cat.load_table(TABLE)
    on_disk = sum(1 for p in wh.rglob("*.parquet"))
    t, _ = timed(lambda: tbl.maintenance.expire_snapshots().older_than(datetime.now(UTC)).commit())
    tbl = cat.load_table(TABLE)
    out["expire_snapshots"] = {
        "seconds": round(t, 3), "snapshots_left": len(tbl.snapshots()),
        "parquet_files_on_disk_before": on_disk, "parquet_files_on_disk_after": sum(1 for p in wh.rglob("*.parquet")),
        "note": "expiry removes snapshots from metadata only; pyiceberg 0.12.0 deletes no data file and has no "
                "remove-orphan-files",
    }
    read_state("read_after_expire")
    try:
        cat.load_table(TABLE).scan(snapshot_id=snaps[9].snapshot_id).to_arrow()
        out["time_travel_snapshot_10_after_expire"] = "read"
    except Exception as e:
        out["time_travel_snapshot_10_after_expire"] = f"failed: {type(e).__name__}: {first_line(e)}"

    tbl = cat.load_table(TABLE)
    before = tbl.current_snapshot().snapshot_id
    total = tbl.scan().to_arrow().num_rows
    t, _ = timed(lambda: tbl.delete(EqualTo("from", who)))
    after_delete = cat.load_table(TABLE).scan().to_arrow().num_rows
    tbl = cat.load_table(TABLE)
    t2, _ = timed(lambda: tbl.manage_snapshots().rollback_to_snapshot(before).commit())
    restored = cat.load_table(TABLE).scan().to_arrow().num_rows
    out["delete_then_rollback"] = {
        "rows_before": total, "delete_seconds": round(t, 3), "rows_after_delete": after_delete,
        "rollback_seconds": round(t2, 3), "rows_after_rollback": restored,
    }
    cat.engine.dispose()
    return out


# --- 2. concurrent writers on moto's S3 ------------------------------------------------------------


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_bucket(endpoint: str, name: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket=name)


def run_writers(writers: int, work: Callable[[int, threading.Barrier], dict]) -> tuple[float, list[dict]]:
    barrier = threading.Barrier(writers)
    results: list[dict] = [{} for _ in range(writers)]

    def body(w: int) -> None:
        results[w] = work(w, barrier)

    threads = [threading.Thread(target=body, args=(w,)) for w in range(writers)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t0, results


def summarise(wall: float, results: list[dict], found: set[tuple[str, str]], rows_present: int, rows: int) -> dict:
    attempted = sum(r["attempted"] for r in results)
    committed = [key for r in results for key in r["committed"]]
    return {
        "writers": len(results),
        "attempted": attempted,
        "committed": len(committed),
        "lost": len([k for k in committed if k not in found]),
        "unexpected_in_table": len(found - set(committed)),
        "errors": [e for r in results for e in r["errors"]],
        "retries": sum(r["retries"] for r in results),
        "retries_per_writer": [r["retries"] for r in results],
        "rows_expected": len(committed) * rows,
        "rows_present": rows_present,
        "wall_seconds": round(wall, 3),
        "commits_per_s": round(len(committed) / wall, 1),
    }


def delta_s3(endpoint: str, data: list[pa.Table], writers: int, appends: int) -> dict:
    bucket = "delta-bench"
    make_bucket(endpoint, bucket)
    uri = f"s3://{bucket}/token_transfers"
    opts = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true", "conditional_put": "etag"}
    DeltaTable.create(uri, schema=TOKEN_TRANSFERS, storage_options=opts)

    def work(w: int, barrier: threading.Barrier) -> dict:
        dt = DeltaTable(uri, storage_options=opts)
        r: dict = {"attempted": 0, "committed": [], "errors": [], "retries": 0}
        barrier.wait()
        for i in range(appends):
            r["attempted"] += 1
            read_version = dt.version()
            try:
                write_deltalake(dt, data[(w * appends + i) % len(data)], mode="append",
                                commit_properties=CommitProperties(custom_metadata={"writer": str(w), "seq": str(i)}))
                r["committed"].append((str(w), str(i)))
                if dt.version() > read_version + 1:  # another writer took the next version: delta-rs
                    r["retries"] += 1  # checked its commit for conflicts and committed after it
            except Exception as e:
                r["errors"].append(f"{type(e).__name__}: {str(e)[:200]}")
        return r

    wall, results = run_writers(writers, work)
    final = DeltaTable(uri, storage_options=opts)
    found = {(h["writer"], h["seq"]) for h in final.history() if "writer" in h}
    out = summarise(wall, results, found, final.to_pyarrow_table().num_rows, data[0].num_rows)
    out["retries_means"] = "commits that landed at a later version than the one after their read (rebased)"
    out["table_versions"] = final.version()
    return out


class RetryCounter(logging.Handler):
    """pyiceberg logs one warning per commit retry ("Commit failed due to a concurrent update")."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.by_thread: dict[int, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            self.by_thread[record.thread] = self.by_thread.get(record.thread, 0) + 1


def iceberg_s3(root: Path, endpoint: str, data: list[pa.Table], writers: int, appends: int) -> dict:
    bucket = "iceberg-bench"
    make_bucket(endpoint, bucket)
    s3 = {"s3.endpoint": endpoint, "s3.access-key-id": "test", "s3.secret-access-key": "test",
          "s3.region": "us-east-1", "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"}
    (root / "iceberg-s3").mkdir()
    cat = iceberg_catalog(root / "iceberg-s3", f"s3://{bucket}/warehouse", **s3)
    cat.create_namespace("obsrvr")
    cat.create_table(TABLE, schema=TOKEN_TRANSFERS)
    counter = RetryCounter()
    log = logging.getLogger("pyiceberg.table")
    log.addHandler(counter)
    log.propagate = False  # the retries are counted, not printed

    def work(w: int, barrier: threading.Barrier) -> dict:
        own = iceberg_catalog(root / "iceberg-s3", f"s3://{bucket}/warehouse", **s3)  # a catalog per writer
        tbl = own.load_table(TABLE)
        r: dict = {"attempted": 0, "committed": [], "errors": [], "retries": 0}
        barrier.wait()
        for i in range(appends):
            r["attempted"] += 1
            try:
                tbl.append(data[(w * appends + i) % len(data)], snapshot_properties={"writer": str(w), "seq": str(i)})
                r["committed"].append((str(w), str(i)))
            except Exception as e:
                r["errors"].append(f"{type(e).__name__}: {str(e)[:200]}")
        r["retries"] = counter.by_thread.get(threading.get_ident(), 0)
        own.engine.dispose()
        return r

    try:
        wall, results = run_writers(writers, work)
    finally:
        log.removeHandler(counter)
        log.propagate = True
    final = cat.load_table(TABLE)
    found = {(s.summary["writer"], s.summary["seq"]) for s in final.snapshots() if s.summary and "writer" in s.summary}
    out = summarise(wall, results, found, final.scan().to_arrow().num_rows, data[0].num_rows)
    out["retries_means"] = "pyiceberg's own commit retries (commit.retry.num-retries, default 4), from its log"
    out["snapshots"] = len(final.snapshots())
    cat.engine.dispose()
    return out


# --- 3. idempotent commits ----------------------------------------------------------------------


def delta_idempotent(root: Path, data: list[pa.Table]) -> dict:
    uri = str(root / "delta-idem")
    DeltaTable.create(uri, schema=TOKEN_TRANSFERS)
    app = "obsrvr/token_transfers/chunk-000123"  # the chunk; the app transaction's version is its generation
    a, b, c = DeltaTable(uri), DeltaTable(uri), DeltaTable(uri)  # three writers holding the same snapshot
    steps: dict = {"app_id": app, "generation": 1}

    def commit(dt: DeltaTable, app_id: str, rows: pa.Table) -> str:
        if (dt.transaction_version(app_id) or 0) >= 1:
            return "skipped: already committed according to this writer's snapshot"
        try:
            write_deltalake(dt, rows, mode="append",
                            commit_properties=CommitProperties(app_transactions=[Transaction(app_id, 1)]))
            return f"committed as version {dt.version()}"
        except CommitFailedError as e:
            return f"refused: CommitFailedError: {e}"

    steps["writer_a"] = commit(a, app, data[0])
    steps["writer_b_stale_same_chunk"] = commit(b, app, data[0])
    steps["writer_b_after_reload"] = commit(DeltaTable(uri), app, data[0])
    steps["writer_c_stale_other_chunk"] = commit(c, "obsrvr/token_transfers/chunk-000124", data[1])
    fresh = DeltaTable(uri)
    steps["transaction_version_seen_by_a_new_reader"] = fresh.transaction_version(app)
    steps["rows"] = fresh.to_pyarrow_table().num_rows
    steps["rows_expected_without_duplicates"] = data[0].num_rows + data[1].num_rows
    steps["concurrent_duplicate_refused"] = steps["writer_b_stale_same_chunk"].startswith("refused")
    steps["unrelated_concurrent_commit_accepted"] = steps["writer_c_stale_other_chunk"].startswith("committed")
    return steps


def iceberg_committed(tbl, chunk: str) -> str | None:
    """The generation of `chunk` recorded in the snapshot summaries the table still holds."""
    gens = [s.summary["obsrvr.generation"] for s in tbl.snapshots()
            if s.summary and s.summary.get("obsrvr.chunk") == chunk]
    return max(gens) if gens else None


def iceberg_idempotent(root: Path, data: list[pa.Table]) -> dict:
    wh = root / "iceberg-idem"
    wh.mkdir()
    cat = iceberg_catalog(wh, f"file://{wh}")
    cat.create_namespace("obsrvr")
    out: dict = {"chunk": "chunk-000123", "generation": "1"}

    def commit(tbl, chunk: str, rows: pa.Table) -> str:
        if iceberg_committed(tbl, chunk) is not None:
            return "skipped: already committed according to this writer's snapshot"
        try:
            tbl.append(rows, snapshot_properties={"obsrvr.chunk": chunk, "obsrvr.generation": "1"})
            return f"committed as snapshot {tbl.current_snapshot().snapshot_id}"
        except CommitFailedException as e:
            return f"refused: CommitFailedException: {e}"

    for label, props in (("default_retries", {}), ("retries_disabled", {"commit.retry.num-retries": "0"})):
        name = f"obsrvr.idem_{label}"
        cat.create_table(name, schema=TOKEN_TRANSFERS, properties=props)
        a, b, c = cat.load_table(name), cat.load_table(name), cat.load_table(name)
        steps: dict = {"table_properties": props}
        counter = RetryCounter()
        log = logging.getLogger("pyiceberg.table")
        log.addHandler(counter)
        log.propagate = False
        try:
            steps["writer_a"] = commit(a, "chunk-000123", data[0])
            steps["writer_b_stale_same_chunk"] = commit(b, "chunk-000123", data[0])
            steps["writer_b_after_reload"] = commit(cat.load_table(name), "chunk-000123", data[0])
            steps["writer_c_stale_other_chunk"] = commit(c, "chunk-000124", data[1])
        finally:
            log.removeHandler(counter)
            log.propagate = True
        fresh = cat.load_table(name)
        steps["pyiceberg_retries"] = sum(counter.by_thread.values())
        steps["generation_seen_by_a_new_reader"] = iceberg_committed(fresh, "chunk-000123")
        steps["rows"] = fresh.scan().to_arrow().num_rows
        steps["rows_expected_without_duplicates"] = data[0].num_rows + data[1].num_rows
        steps["concurrent_duplicate_refused"] = steps["writer_b_stale_same_chunk"].startswith("refused")
        steps["unrelated_concurrent_commit_accepted"] = steps["writer_c_stale_other_chunk"].startswith("committed")
        out[label] = steps
    cat.engine.dispose()
    return out


# --- main ------------------------------------------------------------------------------------------


def report(res: dict) -> None:
    d, i = res["local"]["delta"], res["local"]["iceberg"]
    print(f"\n{res['commits']} appends of {res['rows_per_commit']} rows, local disk; "
          "filtered read = rows of one `from` account")
    print(f"{'':44} {'Delta (deltalake)':>20} {'Iceberg (pyiceberg)':>20}")
    rows = [
        ("commits/s", d["append"]["commits_per_s"], i["append"]["commits_per_s"]),
        ("commit p50 ms", d["append"]["p50_ms"], i["append"]["p50_ms"]),
        ("commit ms, mean of first 10", d["append"]["first_10_mean_ms"], i["append"]["first_10_mean_ms"]),
        ("commit ms, mean of last 10", d["append"]["last_10_mean_ms"], i["append"]["last_10_mean_ms"]),
        ("filtered read ms, after commits", d["read_after_commits"]["filtered_read_ms"],
         i["read_after_commits"]["filtered_read_ms"]),
        ("  of which opening the table ms", d["read_after_commits"]["open_ms"], i["read_after_commits"]["open_ms"]),
        ("  DuckDB over the snapshot's files ms", d["read_after_commits"]["duckdb_filtered_count_ms"],
         i["read_after_commits"]["duckdb_filtered_count_ms"]),
        ("  plain pyarrow, same files ms", d["read_after_commits"]["plain_pyarrow_same_files_ms"],
         i["read_after_commits"]["plain_pyarrow_same_files_ms"]),
        ("filtered read ms, after compact / rewrite", d["read_after_compact"]["filtered_read_ms"],
         i["read_after_full_rewrite"]["filtered_read_ms"]),
        ("data files, after compact / rewrite", d["read_after_compact"]["data_files"],
         i["read_after_full_rewrite"]["data_files"]),
    ]
    for label, a, b in rows:
        print(f"{label:44} {a:>20} {b:>20}")
    print("Iceberg compaction:", i["compact"])
    ds, is_ = res["s3_concurrent"]["delta"], res["s3_concurrent"]["iceberg"]
    print(f"\nconcurrent writers on moto S3: {ds['writers']} threads x {res['appends_per_writer']} appends")
    print(f"{'':44} {'Delta':>20} {'Iceberg':>20}")
    for key in ("attempted", "committed", "lost", "retries", "rows_expected", "rows_present", "commits_per_s"):
        print(f"{key:44} {ds[key]:>20} {is_[key]:>20}")
    print(f"{'errors':44} {len(ds['errors']):>20} {len(is_['errors']):>20}")
    di, ii = res["idempotent"]["delta"], res["idempotent"]["iceberg"]
    print("\nidempotent commit of the same chunk from a stale snapshot:")
    print("  Delta (app transaction):", di["writer_b_stale_same_chunk"])
    dflt = ii["default_retries"]
    print("  Iceberg, default retries:", dflt["writer_b_stale_same_chunk"],
          f"-> rows {dflt['rows']} / expected {dflt['rows_expected_without_duplicates']}")
    print("  Iceberg, retries disabled:", ii["retries_disabled"]["writer_b_stale_same_chunk"],
          "| unrelated chunk:", ii["retries_disabled"]["writer_c_stale_other_chunk"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--appends", type=int, default=20, help="appends per concurrent writer")
    parser.add_argument("--repeats", type=int, default=5, help="reads per measurement (median)")
    parser.add_argument("--output", type=Path, default=RESULTS / "table_formats.json")
    args = parser.parse_args()
    # Everything talks to loopback with dummy keys: nothing may look for credentials or a region on the
    # network (EC2 instance metadata).
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_REGION", "us-east-1")

    t_start = time.perf_counter()
    data = batches(args.commits, args.rows)
    who = account(42)
    expected = sum(pc.sum(pc.equal(b["from"], who)).as_py() or 0 for b in data)
    res: dict = {
        "benchmark": "table_formats",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.table_formats", *sys.argv[1:]]),
        "machine": machine(),
        "versions": {name: version(name) for name in ("deltalake", "pyiceberg", "sqlalchemy", "duckdb", "moto")}
        | {"sqlite": sqlite3.sqlite_version},
        "commits": args.commits, "rows_per_commit": args.rows, "appends_per_writer": args.appends,
        "filter": {"column": "from", "value": who, "rows_matched": expected, "distinct_accounts": ACCOUNTS},
    }
    with tempfile.TemporaryDirectory(prefix="obsrvr-table-formats-") as tmp:
        root = Path(tmp)
        print(f"1/3 {args.commits} local appends each ...", flush=True)
        res["local"] = {"delta": delta_local(root, data, who, expected, args.repeats),
                        "iceberg": iceberg_local(root, data, who, expected, args.repeats)}
        print(f"2/3 {args.writers} concurrent writers on moto S3 ...", flush=True)
        with moto_server() as endpoint:
            res["s3_concurrent"] = {"endpoint": "moto.server on 127.0.0.1",
                                    "delta": delta_s3(endpoint, data, args.writers, args.appends),
                                    "iceberg": iceberg_s3(root, endpoint, data, args.writers, args.appends)}
        print("3/3 idempotent commits ...", flush=True)
        res["idempotent"] = {"delta": delta_idempotent(root, data), "iceberg": iceberg_idempotent(root, data)}
    res["total_seconds"] = round(time.perf_counter() - t_start, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(res, indent=2, default=str) + "\n")
    report(res)
    print(f"\n{res['total_seconds']} s in all; results in {args.output}")


if __name__ == "__main__":
    main()
