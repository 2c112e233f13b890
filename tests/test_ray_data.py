"""The Ray Data API (obsrvr_ray.data) on a real Ray cluster over the lake of real pubnet ledgers:
the ledgers as a Dataset, one block per chunk with the link into it; token transfers extracted
with map_batches equal to the single-process export and grouped by Ray Data; a filter; a corrupt
ledger recorded as a failure while every other ledger's rows are still produced."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import ray
from ray.data import DataContext
from ray.data.aggregate import Count, Sum
from ray.data.context import ShuffleStrategy
from ray.util.state import list_actors

from obsrvr_ray.data import (
    LEDGER_ROWS,
    ChunkSplitError,
    Extractor,
    FailureLog,
    extract_token_transfers,
    read_ledgers,
)
from obsrvr_ray.schema import TOKEN_TRANSFERS
from obsrvr_ray.sources.lake_layout import LakeConfig
from tests.conftest import CONSECUTIVE, REPO
from tests.helpers import run_cli

pytestmark = pytest.mark.timeout(120)

START, END = CONSECUTIVE[0], CONSECUTIVE[-1]  # 63092982-63093001: chunks 63092982-63092991, 63092992-63093001
BAD = 63092990
ORDER = [("ledger_sequence", "ascending"), ("event_index", "ascending")]


@pytest.fixture(scope="module", autouse=True)
def cluster(ray_head):
    """This process joins the session's cluster as a driver; it leaves at the end of the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(address=ray_head.address, logging_level="ERROR", log_to_driver=False)
        context = DataContext.get_current()
        saved = context.enable_progress_bars, context.shuffle_strategy
        # No progress bars in the test log; a sort shuffle for the groupby (the default hash
        # shuffle starts aggregator actors, seconds on a small cluster for a few rows).
        context.enable_progress_bars, context.shuffle_strategy = False, ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
        try:
            yield
        finally:
            context.enable_progress_bars, context.shuffle_strategy = saved
            _kill_detached_actors_of_this_job(ray_head.dashboard)
            ray.shutdown()


def _kill_detached_actors_of_this_job(dashboard: str) -> None:
    """Ray Data starts detached actors (stats, usage, autoscaling coordinator) that outlive this
    driver and make stopping the session's cluster take ~30 s more: end the ones this job made."""
    job = ray.get_runtime_context().get_job_id()
    for actor in list_actors(address=dashboard, filters=[("state", "=", "ALIVE")], detail=True):
        if actor.job_id == job and actor.is_detached and actor.name:
            ray.kill(ray.get_actor(actor.name, namespace=actor.ray_namespace))


@pytest.fixture(scope="module")
def exported(real_lake, tmp_path_factory) -> pa.Table:
    """What `obsrvr-ray export token-transfers` writes for the 20 consecutive ledgers."""
    out = tmp_path_factory.mktemp("export") / "transfers.parquet"
    proc = run_cli("export", "token-transfers", "--source", str(real_lake), "--start", str(START), "--end", str(END),
                   "--out", str(out), timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return pq.read_table(out).sort_by(ORDER)


@pytest.fixture(scope="module")
def broken_lake(real_lake, tmp_path_factory) -> tuple[Path, str]:
    """A copy of the real lake with the object of one ledger truncated (as tests/test_backfill_real.py)."""
    lake = tmp_path_factory.mktemp("broken") / "lake"
    shutil.copytree(real_lake, lake)
    key = LakeConfig().batch_key(BAD)
    (lake / key).write_bytes((lake / key).read_bytes()[:100])  # a truncated zstd frame
    return lake, key


def collect(ds) -> pa.Table:
    return pa.concat_tables(ray.get(ds.to_arrow_refs()))


def test_ledgers_are_one_row_each_one_block_per_chunk_with_the_link(real_lake, real_ledgers):
    ds = read_ledgers(str(real_lake), START, END)
    assert ds.count() == len(CONSECUTIVE)  # from the read tasks' metadata: a lake has a row for every ledger
    ds = ds.materialize()
    assert ds.num_blocks() == 2 and ds.count() == len(CONSECUTIVE)
    rows = collect(ds).sort_by("sequence")
    assert rows.schema == LEDGER_ROWS
    assert rows["sequence"].to_pylist() == list(CONSECUTIVE)  # the ledger before the 2nd chunk is no row
    assert rows["data"].to_pylist() == [real_ledgers[s] for s in CONSECUTIVE]
    assert rows["error"].null_count == rows.num_rows
    assert set(rows["network_passphrase"].to_pylist()) == {"Public Global Stellar Network ; September 2015"}
    assert set(zip(rows["chunk_start"].to_pylist(), rows["chunk_end"].to_pylist(), strict=True)) == {
        (START, 63092991), (63092992, END)}
    # Only the second chunk is linked (the first starts the range): its first row carries ledger 63092991.
    linked = rows.filter(pc.is_valid(rows["link_data"]))
    assert linked["sequence"].to_pylist() == [63092992] and linked["chunk_row"].to_pylist() == [0]
    assert linked["link_data"].to_pylist() == [real_ledgers[63092991]]


def test_token_transfers_equal_the_export_and_group_by_topic(real_lake, exported):
    transfers, failures = extract_token_transfers(read_ledgers(str(real_lake), START, END))
    transfers = transfers.materialize()
    got = collect(transfers)
    assert got.schema == TOKEN_TRANSFERS
    assert got.num_rows == exported.num_rows > 10_000
    assert got.sort_by(ORDER).to_pylist() == exported.to_pylist()
    assert failures.table().num_rows == 0 and failures.ledgers() == len(CONSECUTIVE)

    grouped = transfers.groupby("event_topic", num_partitions=2).aggregate(Count(), Sum("amount")).take_all()
    expected = exported.group_by("event_topic").aggregate([("event_topic", "count"), ("amount", "sum")])
    assert {r["event_topic"]: r["count()"] for r in grouped} == dict(
        zip(expected["event_topic"].to_pylist(), expected["event_topic_count"].to_pylist(), strict=True))
    assert {r["event_topic"] for r in grouped} == {"transfer", "mint", "burn", "fee"}
    sums = {r["event_topic"]: r["sum(amount)"] for r in grouped}
    for topic, total in zip(expected["event_topic"].to_pylist(), expected["amount_sum"].to_pylist(), strict=True):
        assert sums[topic] == pytest.approx(total, rel=1e-12)


def test_an_event_type_filter_narrows_the_rows(real_lake, exported):
    """With chunks of 4 ledgers (6 chunks, 5 links of the chain checked across them)."""
    ledgers = read_ledgers(str(real_lake), START, END, chunk_size=4)
    transfers, failures = extract_token_transfers(ledgers, event_types=("fee",))
    got = collect(transfers).sort_by(ORDER)
    fees = exported.filter(pc.equal(exported["event_topic"], "fee"))
    assert 0 < got.num_rows == fees.num_rows < exported.num_rows
    assert got.to_pylist() == fees.to_pylist()
    assert failures.table().num_rows == 0 and failures.ledgers() == len(CONSECUTIVE)


def test_a_corrupt_ledger_is_a_visible_failure_and_the_others_still_produce_rows(broken_lake, exported):
    lake, key = broken_lake
    ledgers = read_ledgers(str(lake), START, END).materialize()
    raw = collect(ledgers)
    bad = raw.filter(pc.equal(raw["sequence"], BAD)).to_pylist()
    assert len(bad) == 1 and bad[0]["data"] is None and bad[0]["stage"] == "decode"  # a row, not a hole

    failures = FailureLog()
    transfers, log = extract_token_transfers(ledgers, failures=failures)
    assert log is failures
    got = collect(transfers).sort_by(ORDER)
    others = exported.filter(pc.not_equal(exported["ledger_sequence"], BAD))
    assert got.to_pylist() == others.to_pylist()  # every other row, the next ledger (63092991) included

    table = failures.table()
    assert table.schema.names == ["sequence", "object_key", "stage", "error"]
    (row,) = table.to_pylist()
    assert row["sequence"] == BAD and row["object_key"].endswith(key) and row["stage"] == "decode"
    assert "zstd" in row["error"]
    assert failures.failed_ledgers() == [BAD] and failures.ledgers() == len(CONSECUTIVE)

    # Running the dataset again (Ray retries a task the same way) replaces the chunk's record.
    transfers.materialize()
    assert failures.table().equals(table)


def test_a_batch_must_hold_a_chunk_from_its_first_row(real_lake, exported):
    rows = collect(read_ledgers(str(real_lake), START, END)).sort_by("sequence")
    second = rows.filter(pc.equal(rows["chunk_start"], 63092992))
    extractor = Extractor()
    table, found, ledgers = extractor.extract_chunk(second)  # the extraction itself, in this process
    assert found == [] and ledgers == 10
    assert table.sort_by(ORDER).to_pylist() == exported.filter(
        pc.greater_equal(exported["ledger_sequence"], 63092992)).to_pylist()
    with pytest.raises(ChunkSplitError, match="rows 3-9 of chunk 63092992-63093001"):
        extractor.extract_chunk(second.slice(3))
    prefix, _, ledgers = extractor.extract_chunk(second.slice(0, 3))  # what limit() leaves: checked from row 0
    assert ledgers == 3 and set(prefix["ledger_sequence"].to_pylist()) == {63092992, 63092993, 63092994}


def test_the_core_it_calls_does_not_import_ray():
    code = ("import sys\n"
            "import obsrvr_ray.chunks.plan, obsrvr_ray.chunks.process, obsrvr_ray.chunks.raw, obsrvr_ray.pipeline\n"
            "import obsrvr_ray.sources.open, obsrvr_ray.ttp.filters, obsrvr_ray.schema, obsrvr_ray.network\n"
            "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_failures_counts_each_ledger_once_across_tables():
    log = FailureLog()
    log.record("token_transfers", (1, 10), 10, [])
    log.record("ledgers", (1, 10), 10, [])
    log.record("token_transfers", (11, 20), 10, [])
    assert log.ledgers() == 20 and log.table().num_rows == 0

