"""The backfill job on a real Ray cluster over a lake of every real pubnet ledger: same rows as
the single-process export, resumes after a real SIGTERM / SIGKILL of the driver and survives a
SIGKILL of its workers with exactly the uninterrupted output, records a corrupt object as one
failure, --retry-failed, and partition pruning in DuckDB."""

from __future__ import annotations

import json
import re
import shutil
import signal
import urllib.request
from collections import defaultdict
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from obsrvr_ray import cli
from obsrvr_ray.objectstore import LocalStore
from obsrvr_ray.ranges import format_ranges, runs
from obsrvr_ray.sinks.dataset import Dataset
from obsrvr_ray.sinks.layout import is_derived
from obsrvr_ray.sources.lake_layout import LakeConfig
from tests.backfill_helpers import (
    committed,
    descendants,
    file_tree,
    kill_worker,
    process_title,
    read_transfers,
    run_backfill,
    sort_transfers,
    start_backfill,
    wait_for,
)
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(300)

# Small chunks, so a run is long enough to be killed in the middle and has chunks on both sides.
SHAPE = ("--batch-size", "2", "--partition-by", "date,event_type", "--concurrent-readers", "2")


@pytest.fixture(scope="module")
def ledgers(real_ledgers) -> str:
    """Every real ledger, as ranges: sparse singles plus one run of 20 consecutive ledgers."""
    return format_ranges(runs(real_ledgers))


@pytest.fixture(scope="module")
def baseline(ray_head, real_lake, ledgers, tmp_path_factory) -> Path:
    """An uninterrupted backfill of every real ledger: what every other run must reproduce."""
    out = tmp_path_factory.mktemp("baseline") / "out"
    proc = run_backfill(ray_head, "--source", str(real_lake), "--ledgers", ledgers, "--out", str(out), *SHAPE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "status     OK" in proc.stdout
    return out


@pytest.fixture(scope="module")
def exported(real_lake, ledgers, tmp_path_factory) -> pa.Table:
    """The single-process `obsrvr-ray export token-transfers` of every range, in one table."""
    folder = tmp_path_factory.mktemp("export")
    tables = []
    for start, end in runs(int(x) for part in ledgers.split(",") for x in _expand(part)):
        path = folder / f"{start}.parquet"
        assert cli.main(["export", "token-transfers", "--source", str(real_lake), "--start", str(start),
                         "--end", str(end), "--out", str(path)]) == 0
        tables.append(pq.read_table(path))
    return sort_transfers(pa.concat_tables(tables))


def _expand(part: str) -> range:
    first, _, last = part.partition("-")
    return range(int(first), int(last or first) + 1)


def test_token_transfers_equal_the_single_process_export(baseline, exported):
    backfilled = read_transfers(baseline)
    assert backfilled.num_rows == exported.num_rows > 16_000
    assert backfilled.equals(exported)
    assert not (baseline / "parquet" / "failures").exists()
    assert Dataset(LocalStore(baseline)).verify(is_derived) == []


def test_analytics_are_exact_over_the_whole_output(baseline, exported):
    volume: dict[tuple, int] = defaultdict(int)
    events: dict[str, int] = defaultdict(int)
    for row in exported.select(["contract_id", "event_topic", "amount_raw"]).to_pylist():
        volume[row["contract_id"], row["event_topic"]] += int(row["amount_raw"])
        events[row["event_topic"]] += 1
    daily = pq.read_table(baseline / "parquet" / "analytics" / "asset_volume_daily.parquet").to_pylist()
    summed: dict[tuple, int] = defaultdict(int)
    for row in daily:
        summed[row["contract_id"], row["event_topic"]] += int(row["volume_raw"])
    assert summed == volume
    counts = pq.read_table(baseline / "parquet" / "analytics" / "event_type_counts.parquet").to_pylist()
    per_type: dict[str, int] = defaultdict(int)
    for row in counts:
        per_type[row["event_topic"]] += row["events"]
    assert per_type == events
    largest = pq.read_table(baseline / "parquet" / "analytics" / "largest_transfers.parquet")
    transfers = exported.filter(pa.compute.equal(exported["event_topic"], "transfer")).to_pylist()
    top = max(transfers, key=lambda r: (int(r["amount_raw"]), -r["ledger_sequence"]))
    top_rows = [r for r in largest.to_pylist() if r["contract_id"] == top["contract_id"] and r["rank"] == 1]
    assert top_rows[0]["amount_raw"] == top["amount_raw"]


def test_duckdb_reads_only_the_partitions_a_filter_selects(baseline):
    root = baseline / "parquet" / "token_transfers"
    every = sorted(root.rglob("*.parquet"))
    mints = sorted(root.glob("date=*/event_type=mint/*.parquet"))
    assert 0 < len(mints) < len(every)
    query = (f"SELECT count(*) FROM read_parquet('{root}/**/*.parquet', hive_partitioning=true) "
             "WHERE event_type = 'mint'")
    plan = "\n".join(row[1] for row in duckdb.sql("EXPLAIN ANALYZE " + query).fetchall())
    assert f"Total Files Read: {len(mints)}" in plan, plan
    assert f"Scanning Files: {len(mints)}/{len(every)}" in plan, plan
    ((count,),) = duckdb.sql(query).fetchall()
    files = duckdb.sql(f"SELECT DISTINCT filename FROM read_parquet('{root}/**/*.parquet', hive_partitioning=true, "
                       "filename=true) WHERE event_type = 'mint'").fetchall()
    assert sorted(Path(f) for (f,) in files) == mints
    assert count == read_transfers(baseline).filter(pa.compute.equal(
        read_transfers(baseline)["event_topic"], "mint")).num_rows


def test_killing_the_driver_then_rerunning_gives_the_uninterrupted_output(ray_head, real_lake, ledgers, baseline,
                                                                          tmp_path):
    out = tmp_path / "out"
    args = ("--source", str(real_lake), "--ledgers", ledgers, "--out", str(out), *SHAPE)
    total = len(committed(baseline))
    seen = []
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGKILL, -signal.SIGKILL)):
        log = tmp_path / f"run-{sig}.log"
        driver = start_backfill(ray_head, *args, log=log)
        before = len(committed(out))
        wait_for(lambda b=before: len(committed(out)) >= b + 2, what="two commits")
        driver.send_signal(sig)
        assert driver.wait(timeout=60) == code, log.read_text()
        seen.append(len(committed(out)))
        assert seen[-1] < total, "the run ended before the signal: nothing was interrupted"
        if sig == signal.SIGTERM:
            assert "INTERRUPTED by signal 15" in log.read_text()
    assert seen[0] < seen[1]
    proc = run_backfill(ray_head, *args, "--verify-output")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # A task of the killed driver may still commit a chunk after its driver died, even one the
    # rerun is working on (then the rerun's attempt loses the commit and adopts it).
    now, earlier = map(int, re.search(r"(\d+) committed now, (\d+) committed earlier", proc.stdout).groups())
    assert now + earlier == total and earlier >= seen[1]
    # What readers see (everything but the staging area) is the uninterrupted run's, byte for byte,
    # once the killed run's workers have ended (Ray stops them shortly after their driver dies).
    wait_for(lambda: not any(process_title(p).startswith(("ray::commit_chunk", "ray::ChunkReader"))
                             for p in descendants(ray_head.pid)), timeout=60, what="the killed run's workers to end")
    assert visible(file_tree(out)) == visible(file_tree(baseline))  # no duplicate, no gap
    assert committed(out) == committed(baseline)
    # A straggler killed while staging can leave staged files; the next run sweeps them.
    again = run_backfill(ray_head, *args)
    assert again.returncode == 0 and "0 committed now" in again.stdout, again.stdout + again.stderr
    assert file_tree(out) == file_tree(baseline)


def visible(tree: dict[str, str]) -> dict[str, str]:
    return {path: digest for path, digest in tree.items() if not path.startswith("_backfill/staging/")}


def test_killing_workers_mid_run_loses_and_duplicates_nothing(ray_head, real_lake, ledgers, baseline, tmp_path):
    out = tmp_path / "out"
    port = free_port()
    args = ("--source", str(real_lake), "--ledgers", ledgers, "--out", str(out), *SHAPE, "--metrics-port", str(port),
            "--metrics-file", str(tmp_path / "backfill.prom"))
    log = tmp_path / "run.log"
    driver = start_backfill(ray_head, *args, log=log)
    wait_for(lambda: len(committed(out)) >= 1, what="a first commit")
    killed = {title: wait_for(lambda t=title: kill_worker(ray_head, t), timeout=60, what=f"a {title}", interval=0.005)
              for title in ("ray::ChunkReader", "ray::commit_chunk")}
    scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "ledgers_processed_total" in scraped and "current_ledger" in scraped
    assert driver.wait(timeout=240) == 0, log.read_text()
    assert len(killed) == 2 and len(committed(out)) == len(committed(baseline))
    assert file_tree(out) == file_tree(baseline)
    rerun = run_backfill(ray_head, *args)
    assert rerun.returncode == 0 and "0 committed now" in rerun.stdout, rerun.stdout + rerun.stderr
    final = (tmp_path / "backfill.prom").read_text()
    assert "batches_generated_total 0.0" in final and "chunks_skipped_total" in final


@pytest.fixture
def broken_lake(real_lake, tmp_path) -> tuple[Path, str, bytes]:
    """A copy of the real lake with the object of ledger 63092990 replaced by garbage."""
    lake = tmp_path / "lake"
    shutil.copytree(real_lake, lake)
    key = LakeConfig().batch_key(63092990)
    original = (lake / key).read_bytes()
    (lake / key).write_bytes(original[:100])  # a truncated zstd frame
    return lake, key, original


def test_a_corrupt_object_is_one_failure_and_retry_failed_mends_it(ray_head, broken_lake, ledgers, baseline,
                                                                   tmp_path):
    lake, key, original = broken_lake
    out = tmp_path / "out"
    args = ("--source", str(lake), "--out", str(out), *SHAPE)
    first = run_backfill(ray_head, *args, "--ledgers", ledgers)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "1 chunks hold failures" in first.stdout and "--retry-failed" in first.stdout
    failures = pa.concat_tables(pq.read_table(p) for p in (out / "parquet" / "failures").glob("*.parquet"))
    assert failures.num_rows == 1
    (row,) = failures.to_pylist()
    assert row["sequence"] == 63092990 and row["object_key"].endswith(key) and row["stage"] == "decode"
    assert "zstd" in row["error"]
    expected = read_transfers(baseline)
    others = expected.filter(pa.compute.not_equal(expected["ledger_sequence"], 63092990))
    assert read_transfers(out).equals(others)  # every other row, the next ledger included

    unchanged = run_backfill(ray_head, *args, "--retry-failed")  # the object is still bad
    assert unchanged.returncode == 1 and "1 ledgers: 0 ok, 1 failed" in unchanged.stdout, unchanged.stdout

    (lake / key).write_bytes(original)
    retry = run_backfill(ray_head, *args, "--retry-failed", "--verify-output")
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert "processed  1 ledgers: 1 ok, 0 failed" in retry.stdout
    assert read_transfers(out).equals(expected)
    assert not list((out / "parquet" / "failures").glob("*"))
    for name in ("asset_volume_hourly", "event_type_counts", "largest_transfers"):
        path = Path("parquet") / "analytics" / f"{name}.parquet"
        assert pq.read_table(out / path).equals(pq.read_table(baseline / path)), name
    entries = [json.loads(p.read_text()) for p in (out / "_backfill" / "manifest").glob("*.g2.json")]
    assert len(entries) == 1 and entries[0]["details"]["segments"] == [[63092990, 63092990]]
