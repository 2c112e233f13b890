"""The tables' lifecycle on real ledgers, without a cluster: history, compaction (rows unchanged,
fewer files, an older snapshot still readable), retention by age, vacuum freeing the files,
reading as of an older version (the query path and the export command), restore."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from obsrvr_ray.chunks.plan import Grid, plan
from obsrvr_ray.chunks.process import ChunkSettings, build_commit
from obsrvr_ray.chunks.raw import read_unit
from obsrvr_ray.network import PUBNET
from obsrvr_ray.pipeline import ExtractOptions
from obsrvr_ray.query import TableReader, TransferQuery
from obsrvr_ray.sinks.layout import OutputSpec
from obsrvr_ray.sources.open import open_source
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.maintenance import (
    MaintenancePolicy,
    MaintenanceStatus,
    compact,
    history,
    maintain,
    restore,
    retain,
    vacuum,
    verify,
)
from obsrvr_ray.table.tableset import Shape, TableSet
from tests.helpers import run_cli

SHAPE = Shape({"layout": 2, "partition_by": ["date"]}, ("date",))
TABLES = ("ledgers", "token_transfers")


@pytest.fixture(scope="module")
def commits(real_lake, real_ledgers):
    """One chunk commit per real pubnet ledger (sparse, 2015-2026: many dates), oldest first."""
    source = open_source(str(real_lake))
    settings = ChunkSettings(TABLES, OutputSpec("unused"), ExtractOptions(PUBNET))
    units = plan(tuple((s, s) for s in sorted(real_ledgers)), {}, Grid.aligned(1))
    return [build_commit(u, read_unit(source, u), settings) for u in units]


def _fill(root: Path, commits) -> TableSet:
    tables = TableSet(TableLocation(str(root)))
    tables.ensure(SHAPE, TABLES)
    for commit in commits:
        tables.commit_chunk(commit, SHAPE.partition_by)
    return tables


def _data_files(root: Path, name: str) -> int:
    return len(list((root / name).rglob("*.parquet")))


def _rows(table: pa.Table) -> list[dict]:
    return table.sort_by([("ledger_sequence", "ascending"), ("event_index", "ascending")]).to_pylist()


def test_history_compaction_and_an_older_snapshot(commits, tmp_path):
    tables = _fill(tmp_path, commits)
    entries = history(tables, "token_transfers")
    chunked = [e for e in entries if e.get("obsrvr.chunk")]
    assert len(chunked) == len(commits) and {e["obsrvr.writer"] for e in chunked} == {"backfill"}
    before = TableReader(str(tmp_path)).read("token_transfers")
    version = tables.table("token_transfers").version()
    files = len(tables.table("token_transfers").file_uris())
    done = {c.table: c for c in compact(tables, ("token_transfers",))}["token_transfers"]
    assert done.files_removed > done.files_added > 0
    assert len(tables.table("token_transfers").file_uris()) < files
    assert _rows(TableReader(str(tmp_path)).read("token_transfers")) == _rows(before)
    assert _rows(TableReader(str(tmp_path), as_of=version).read("token_transfers")) == _rows(before)
    assert verify(tables, TABLES) == []
    assert history(tables, "token_transfers", 1)[0]["operation"] == "OPTIMIZE"


def test_retention_removes_old_partitions_and_vacuum_frees_their_files(commits, tmp_path):
    tables = _fill(tmp_path, commits)
    everything = TableReader(str(tmp_path)).read("token_transfers")
    version = tables.table("token_transfers").version()
    now = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    cutoff = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    kept = everything.filter(pa.compute.greater_equal(everything["closed_at"], pa.scalar(cutoff, everything.schema
                                                                                          .field("closed_at").type)))
    assert 0 < kept.num_rows < everything.num_rows
    deleted = retain(tables, "token_transfers", now - cutoff, now=now)
    assert deleted == everything.num_rows - kept.num_rows
    assert _rows(TableReader(str(tmp_path)).read("token_transfers")) == _rows(kept)
    before = _data_files(tmp_path, "token_transfers")
    assert vacuum(tables, ("token_transfers",), retention_hours=168)["token_transfers"] == []  # inside the window
    removed = vacuum(tables, ("token_transfers",), retention_hours=0)["token_transfers"]
    assert removed and _data_files(tmp_path, "token_transfers") == before - len(removed)
    old_dates = {d for d in everything["closed_at"].to_pylist() if d < cutoff}
    assert old_dates and not any(
        f"date={d:%Y-%m-%d}" in path for d in old_dates for path in map(str, (tmp_path / "token_transfers")
                                                                          .rglob("*.parquet")))
    with pytest.raises(Exception, match="cannot restore"):  # vacuumed: that version's files are gone
        restore(tables, "token_transfers", version)


def test_as_of_reads_an_older_version_through_the_query_path_and_the_export_command(commits, tmp_path):
    tables = _fill(tmp_path, commits[:3])
    version = tables.table("token_transfers").version()
    three = TableReader(str(tmp_path)).read("token_transfers")
    for commit in commits[3:]:
        tables.commit_chunk(commit, SHAPE.partition_by)
    now = TableReader(str(tmp_path))
    assert now.read("token_transfers").num_rows > three.num_rows
    past = now.at(version)
    page = past.transfers(TransferQuery(limit=1000))
    assert _rows(page.rows) == _rows(three)[:1000]
    out = tmp_path / "v.parquet"
    proc = run_cli("table", "export", "token-transfers", "--out", str(tmp_path), "--to", str(out), "--as-of",
                   str(version))
    assert proc.returncode == 0, proc.stderr
    assert _rows(pq.read_table(out)) == _rows(three)
    proc = run_cli("table", "export", "token-transfers", "--out", str(tmp_path), "--to", str(out), "--as-of", "999")
    assert proc.returncode == 2 and "cannot read as of 999" in proc.stderr


def test_restore_brings_back_a_version_as_the_latest(commits, tmp_path):
    tables = _fill(tmp_path, commits[:4])
    version = tables.table("token_transfers").version()
    rows = TableReader(str(tmp_path)).read("token_transfers")
    retain(tables, "token_transfers", dt.timedelta(days=1))  # everything is older than a day
    assert TableReader(str(tmp_path)).read("token_transfers").num_rows == 0
    proc = run_cli("table", "restore", "--out", str(tmp_path), "--table", "token_transfers", "--to", str(version))
    assert proc.returncode == 0, proc.stderr
    assert _rows(TableReader(str(tmp_path)).read("token_transfers")) == _rows(rows)
    assert history(TableSet(TableLocation(str(tmp_path))), "token_transfers", 1)[0]["operation"] == "RESTORE"


def test_a_scheduled_run_compacts_retains_and_vacuums(commits, tmp_path):
    tables = _fill(tmp_path, commits)
    status = MaintenanceStatus()
    policy = MaintenancePolicy(compact_every=1, retention=(("ledgers", "3650d"),), vacuum_retention_hours=0)
    maintain(tables, policy, status)
    assert status.runs == 1 and status.files_compacted > 0 and status.files_vacuumed > 0
    assert status.rows_retired == sum(1 for c in commits
                                      if c.tables["ledgers"]["closed_at"][0].as_py()
                                      < dt.datetime.now(dt.UTC) - dt.timedelta(days=3650))
    assert status.versions["token_transfers"] == tables.table("token_transfers").version()
    assert verify(tables, ("token_transfers",)) == []


def test_the_table_commands(commits, tmp_path):
    _fill(tmp_path, commits[:3])
    proc = run_cli("table", "history", "--out", str(tmp_path), "--table", "token_transfers", "--limit", "2")
    assert proc.returncode == 0 and "WRITE" in proc.stdout and "chunk " in proc.stdout, proc.stdout + proc.stderr
    proc = run_cli("table", "compact", "--out", str(tmp_path))
    assert proc.returncode == 0 and "chunks: 3 files rewritten into 1" in proc.stdout, proc.stdout
    proc = run_cli("table", "vacuum", "--out", str(tmp_path), "--retention-hours", "0", "--dry-run")
    assert proc.returncode == 0 and "would be removed" in proc.stdout, proc.stdout
    proc = run_cli("table", "verify", "--out", str(tmp_path))
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stdout
    proc = run_cli("table", "retain", "--out", str(tmp_path), "--older-than", "soon")
    assert proc.returncode == 2 and "an age is a number" in proc.stderr
