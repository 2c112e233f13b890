"""The backfill job on a real Ray cluster over a lake of every real pubnet ledger: same rows as
the single-process export, resumes after a real SIGTERM / SIGKILL of the driver and survives a
SIGKILL of its workers with exactly the uninterrupted output, records a corrupt object as one
failure, --retry-failed, and partition pruning when DuckDB queries a snapshot."""

from __future__ import annotations

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
from obsrvr_ray.ranges import format_ranges, runs
from obsrvr_ray.sources.lake_layout import LakeConfig
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.maintenance import verify
from obsrvr_ray.table.tableset import TableSet
from tests.backfill_helpers import (
    committed,
    descendants,
    kill_worker,
    process_title,
    read_transfers,
    run_backfill,
    sort_transfers,
    start_backfill,
    table_contents,
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
    tables = TableSet(TableLocation(str(baseline)))
    assert tables.failures().num_rows == 0
    assert verify(tables, ("token_transfers",)) == []


def test_analytics_are_exact_over_the_whole_output(baseline, exported):
    volume: dict[tuple, int] = defaultdict(int)
    events: dict[str, int] = defaultdict(int)
    for row in exported.select(["contract_id", "event_topic", "amount_raw"]).to_pylist():
        volume[row["contract_id"], row["event_topic"]] += int(row["amount_raw"])
        events[row["event_topic"]] += 1
    tables = TableSet(TableLocation(str(baseline)))
    daily = tables.read("analytics/asset_volume_daily").to_pylist()
    summed: dict[tuple, int] = defaultdict(int)
    for row in daily:
        summed[row["contract_id"], row["event_topic"]] += int(row["volume_raw"])
    assert summed == volume
    counts = tables.read("analytics/event_type_counts").to_pylist()
    per_type: dict[str, int] = defaultdict(int)
    for row in counts:
        per_type[row["event_topic"]] += row["events"]
    assert per_type == events
    largest = tables.read("analytics/largest_transfers")
    transfers = exported.filter(pa.compute.equal(exported["event_topic"], "transfer")).to_pylist()
    top = max(transfers, key=lambda r: (int(r["amount_raw"]), -r["ledger_sequence"]))
    top_rows = [r for r in largest.to_pylist() if r["contract_id"] == top["contract_id"] and r["rank"] == 1]
    assert top_rows[0]["amount_raw"] == top["amount_raw"]


def test_duckdb_over_a_snapshot_reads_only_the_partitions_a_filter_selects(baseline):
    """The tested DuckDB path (no extension downloads here): the snapshot's Arrow dataset, handed
    to DuckDB, which pushes the filter down to it; pyarrow skips the files of other partitions."""
    snapshot = TableSet(TableLocation(str(baseline))).table("token_transfers")
    transfers = snapshot.to_pyarrow_dataset()
    every = list(transfers.get_fragments())
    mints = list(transfers.get_fragments(filter=pa.dataset.field("event_topic") == "mint"))
    assert 0 < len(mints) < len(every)
    assert all("event_topic=mint/" in f.path for f in mints)
    ((count,),) = duckdb.sql("SELECT count(*) FROM transfers WHERE event_topic = 'mint'").fetchall()
    expected = read_transfers(baseline)
    assert count == expected.filter(pa.compute.equal(expected["event_topic"], "mint")).num_rows


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
    # What readers see is the uninterrupted run's, row for row, once the killed run's workers have
    # ended (Ray stops them shortly after their driver dies): no duplicate, no gap.
    wait_for(lambda: not any(process_title(p).startswith(("ray::commit_chunk", "ray::ChunkReader"))
                             for p in descendants(ray_head.pid)), timeout=60, what="the killed run's workers to end")
    assert table_contents(out) == table_contents(baseline)
    assert committed(out) == committed(baseline)
    again = run_backfill(ray_head, *args)
    assert again.returncode == 0 and "0 committed now" in again.stdout, again.stdout + again.stderr
    assert table_contents(out) == table_contents(baseline)


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
    assert table_contents(out) == table_contents(baseline)
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
    tables = TableSet(TableLocation(str(out)))
    failures = tables.failures()
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
    assert tables.failures().num_rows == 0
    done = TableSet(TableLocation(str(baseline)))
    for name in ("asset_volume_hourly", "event_type_counts", "largest_transfers"):
        assert tables.read(f"analytics/{name}").equals(done.read(f"analytics/{name}")), name
    chunks = tables.read("chunks").to_pylist()
    (third,) = [row for row in chunks if row["generation"] == 2]
    assert third["ledgers"] == 1 and third["chunk_start"] <= 63092990 <= third["chunk_end"]


def test_the_ray_data_engine_commits_the_same_tables(ray_head, real_lake, ledgers, baseline, tmp_path):
    """`--engine data` (ChunkDatasource read tasks fused with the TableDatasink) against the task
    engine's uninterrupted output: every table, row for row."""
    out = tmp_path / "out"
    proc = run_backfill(ray_head, "--source", str(real_lake), "--ledgers", ledgers, "--out", str(out), *SHAPE,
                        "--engine", "data", "--verify-output")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"chunks     {len(committed(baseline))} committed now" in proc.stdout
    assert table_contents(out) == table_contents(baseline)
