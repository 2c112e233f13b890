"""What the Delta tables promise when writers run at the same time or die mid-commit, shown on
real pubnet ledgers with real processes: a backfill on the Ray cluster and the live follower
committing to one S3 output at once (moto's server, conditional PUTs), readers polling a table
while a backfill commits to it (only whole chunks, never a row twice), and the follower
SIGKILLed between the commits of one cell's tables, then resumed (exactly the uninterrupted
rows)."""

from __future__ import annotations

import itertools
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import boto3
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError
from deltalake import DeltaTable

from obsrvr_ray import cli
from obsrvr_ray.backfill_settings import BackfillConfig
from obsrvr_ray.chunks.job import resolve, shape
from obsrvr_ray.chunks.process import ChunkSettings
from obsrvr_ray.live.service import FollowerConfig, FollowerService
from obsrvr_ray.network import PUBNET
from obsrvr_ray.objectstore import S3Options
from obsrvr_ray.pipeline import ExtractOptions
from obsrvr_ray.query import TableReader
from obsrvr_ray.ranges import format_ranges, runs
from obsrvr_ray.rpc_server import LedgerArchive, RpcServer
from obsrvr_ray.sinks.layout import OutputSpec
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.maintenance import verify
from obsrvr_ray.table.tableset import CHUNKS_TABLE, COMMIT_ORDER, TableSet, app_id
from tests.backfill_helpers import (
    read_transfers,
    sort_transfers,
    start_backfill,
    table_contents,
    wait_for,
)
from tests.conftest import CONSECUTIVE, REPO

TABLES = ("ledgers", "token_transfers")  # both writers: the same tables, so the same settings
FIRST, LAST = CONSECUTIVE[0], CONSECUTIVE[-1]
KEYS = ["ledger_sequence", "event_index"]


def export(lake: Path, start: int, end: int, path: Path) -> pa.Table:
    """The single-process `obsrvr-ray export token-transfers` of a range: the reference rows."""
    assert cli.main(["export", "token-transfers", "--source", str(lake), "--start", str(start), "--end", str(end),
                     "--out", str(path)]) == 0
    return sort_transfers(pq.read_table(path))


@pytest.fixture(scope="module")
def exported(real_lake, tmp_path_factory) -> pa.Table:
    """The export of all 20 consecutive ledgers."""
    return export(real_lake, FIRST, LAST, tmp_path_factory.mktemp("export") / "consecutive.parquet")


def serve(real_ledgers: dict[int, bytes], sequences) -> RpcServer:
    archive = LedgerArchive()
    archive.add_all(real_ledgers[s] for s in sequences)
    return RpcServer(archive, PUBNET).start()


def follower_settings(out: str, s3: S3Options | None = None) -> ChunkSettings:
    return ChunkSettings(tables=TABLES, output=OutputSpec(out, s3=s3 or S3Options()), extract=ExtractOptions(PUBNET))


def cells(first: int, last: int, every: int) -> list[tuple[int, int]]:
    return [(s, min(s + every - 1, last)) for s in range(first, last + 1, every)]


def no_duplicates(table: pa.Table) -> bool:
    counted = table.group_by(KEYS).aggregate([([], "count_all")])
    return pc.max(counted["count_all"]).as_py() in (None, 1)


def per_ledger(table: pa.Table) -> dict[int, int]:
    return dict(Counter(table["ledger_sequence"].to_pylist()))


def end(proc: subprocess.Popen) -> None:
    """SIGKILL a child process of this test that is still running (a failed or timed-out wait)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


# --- 1. a backfill and the live follower commit to one S3 output at once -----------------------


@pytest.mark.timeout(150)
def test_backfill_and_live_follower_write_one_s3_output_at_once(ray_head, real_lake, real_ledgers, s3_endpoint,
                                                                exported, tmp_path):
    bucket, every = "guarantees", 2
    out = f"s3://{bucket}/concurrent"
    s3 = S3Options(endpoint_url=s3_endpoint, region="us-east-1")
    s3_client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3_client.create_bucket(Bucket=bucket)
    backfill_args = ("--source", str(real_lake), "--start", str(CONSECUTIVE[0]), "--end", str(CONSECUTIVE[9]),
                     "--batch-size", "1", "--tables", ",".join(TABLES), "--out", out,
                     "--out-s3-endpoint-url", s3_endpoint, "--out-s3-region", "us-east-1")
    settings = follower_settings(out, s3)
    # The same settings in full, not only the row-shaping ones: whichever writer creates the
    # output first records its settings, and the backfill refuses an output written otherwise.
    backfill_settings = resolve(BackfillConfig(source=str(real_lake), out=out, out_s3_endpoint_url=s3_endpoint,
                                               out_s3_region="us-east-1", tables=TABLES)).settings
    assert shape(backfill_settings) == shape(settings)

    server = serve(real_ledgers, CONSECUTIVE[10:])
    tables = TableSet(TableLocation(out, s3))
    log = tmp_path / "backfill.log"
    driver = start_backfill(ray_head, *backfill_args, log=log)
    stop = threading.Event()
    try:
        config = FollowerConfig(rpc_url=server.url, settings=settings, start=CONSECUTIVE[10], commit_every=every,
                                poll_interval=0.05)
        follower = FollowerService(config)  # creates the tables unless the backfill did first: they race
        # Step the follower while the backfill commits: from its first commit on.
        wait_for(lambda: driver.poll() is not None or tables.committed(), timeout=90, what="a backfill commit",
                 interval=0.05)
        errors: list[BaseException] = []

        def follow() -> None:
            try:
                deadline = time.monotonic() + 90
                while (follower.follower.status.committed_through != LAST and time.monotonic() < deadline
                       and not stop.is_set()):
                    follower.follower.step()
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)

        thread = threading.Thread(target=follow, name="test-follower", daemon=True)
        thread.start()
        assert driver.wait(timeout=120) == 0, log.read_text()
        thread.join(timeout=100)
        assert not thread.is_alive() and not errors, errors
        status = follower.status()
        assert status["committed_through"] == LAST and status["failures"] == 0, status
    finally:
        stop.set()
        end(driver)
        server.stop()

    # Every ledger of both ranges once, as the single-process export has it.
    transfers = sort_transfers(TableReader(out, s3).read("token_transfers"))
    assert transfers.num_rows == exported.num_rows > 10_000
    assert transfers.equals(exported)
    ledgers = TableReader(out, s3).read("ledgers")["sequence"].to_pylist()
    assert sorted(ledgers) == list(CONSECUTIVE)

    # No commit lost: one chunks row for every backfill chunk and every follower cell.
    chunks = tables.read(CHUNKS_TABLE).sort_by("chunk_start").to_pylist()
    backfill_chunks = cells(CONSECUTIVE[0], CONSECUTIVE[9], 1)
    live_cells = cells(CONSECUTIVE[10], LAST, every)
    assert [(c["chunk_start"], c["chunk_end"], c["generation"], c["writer"]) for c in chunks] == (
        [(a, b, 0, "backfill") for a, b in backfill_chunks] + [(a, b, 0, "live") for a, b in live_cells])
    assert sum(c["transfer_rows"] for c in chunks) == exported.num_rows
    assert verify(tables, TABLES) == []
    # What makes it safe: the store refuses a second PUT of a commit file (moto, as S3, honours If-None-Match).
    with pytest.raises(ClientError, match="PreconditionFailed"):
        s3_client.put_object(Bucket=bucket, Key="concurrent/token_transfers/_delta_log/00000000000000000001.json",
                             Body=b"{}", IfNoneMatch="*")

    # The token_transfers history: a commit of each writer per chunk, interleaved.
    history = sorted((h for h in DeltaTable(tables.uri("token_transfers"),
                                            storage_options=tables.location.storage_options()).history()
                      if "obsrvr.writer" in h), key=lambda h: h["version"])
    writers = [h["obsrvr.writer"] for h in history]
    assert Counter(writers) == {"backfill": len(backfill_chunks), "live": len(live_cells)}
    switches = sum(1 for a, b in itertools.pairwise(writers) if a != b)
    retries = sum(h.get("operationMetrics", {}).get("num_retries", 0) for h in history)
    print(f"\nconcurrent writers: token_transfers versions by writer {''.join(w[0] for w in writers)} "
          f"(b = backfill, l = live), {switches} writer switches, {retries} commit retries after a lost race")
    assert switches >= 2, f"the writers did not overlap: {writers}"


# --- 2. readers see whole chunks only, while a backfill commits ----------------------------


@pytest.mark.timeout(150)
def test_snapshots_read_during_a_backfill_hold_whole_chunks_only(ray_head, real_lake, real_ledgers, exported,
                                                                 tmp_path):
    out = tmp_path / "out"
    ledgers = format_ranges(runs(real_ledgers))
    args = ("--source", str(real_lake), "--ledgers", ledgers, "--out", str(out), "--batch-size", "2",
            "--partition-by", "date,event_type", "--concurrent-readers", "2")
    tables = TableSet(TableLocation(str(out)))
    reader = TableReader(str(out))
    observed: dict[int, dict[int, int]] = {}  # version -> rows per ledger (pyarrow and DuckDB agreed)
    listed_done: list[tuple[dict, dict[int, int]]] = []  # chunks listed done, then a later snapshot's rows
    reader_reads: list[dict[int, int]] = []
    problems: list[str] = []

    def observe() -> None:
        done = tables.committed() if tables.exists(CHUNKS_TABLE) else {}  # read before the transfers
        snapshot = tables.table("token_transfers")
        if snapshot is None:
            return
        version = snapshot.version()
        if version in observed:
            return
        keys = snapshot.to_pyarrow_table(columns=KEYS)
        if not no_duplicates(keys):
            problems.append(f"version {version}: a (ledger_sequence, event_index) twice")
        data = snapshot.to_pyarrow_dataset()  # noqa: F841 (DuckDB finds it by name)
        counted = dict(duckdb.sql("SELECT ledger_sequence, count(*) FROM data GROUP BY ALL").fetchall())
        if counted != per_ledger(keys):
            problems.append(f"version {version}: DuckDB counts {counted}, pyarrow {per_ledger(keys)}")
        observed[version] = counted
        listed_done.append((done, counted))
        if len(observed) % 3 == 0:  # the query layer's read (latest snapshot, whatever it is by now)
            rows = reader.read("token_transfers")
            if not no_duplicates(rows):
                problems.append("TableReader: a (ledger_sequence, event_index) twice")
            reader_reads.append(per_ledger(rows))

    driver = start_backfill(ray_head, *args, log=tmp_path / "backfill.log")
    try:
        deadline = time.monotonic() + 120
        while driver.poll() is None and time.monotonic() < deadline:
            observe()
            time.sleep(0.01)
        assert driver.wait(timeout=5) == 0, (tmp_path / "backfill.log").read_text()
    finally:
        end(driver)
    observe()
    assert problems == []

    final = per_ledger(read_transfers(out))
    consecutive = per_ledger(exported)
    assert {s: n for s, n in final.items() if s in consecutive} == consecutive  # the complete export's counts
    chunks = sorted(tables.committed())
    assert len(chunks) > 10
    assert sum(final.values()) > 16_000

    def whole_chunks(counts: dict[int, int]) -> bool:
        if any(final.get(s) != n for s, n in counts.items()):  # a ledger with some of its rows
            return False
        return all(len({s in counts for s in range(a, b + 1) if s in final}) <= 1 for a, b in chunks)

    for version, counts in observed.items():
        assert whole_chunks(counts), f"version {version} holds part of a chunk"
    for counts in reader_reads:
        assert whole_chunks(counts)
    for done, counts in listed_done:  # a chunk with its chunks row has all its rows visible
        assert all(s in counts for a, b in done for s in range(a, b + 1) if s in final)
    partial = [v for v, counts in observed.items() if 0 < len(counts) < len(final)]
    print(f"\nsnapshot reads: {len(observed)} token_transfers versions seen ({len(partial)} partly backfilled, "
          f"ledgers per snapshot {sorted(len(c) for c in observed.values())}), {len(reader_reads)} TableReader "
          f"reads, {len(chunks)} chunks")
    assert len(partial) > 2, "too few snapshots seen mid-run to show anything"
    assert verify(tables, ("token_transfers",)) == []


# --- 3. the follower SIGKILLed while it commits, then resumed -----------------------------

CHILD = """
import sys
from obsrvr_ray.live.service import FollowerConfig, FollowerService
from obsrvr_ray.chunks.process import ChunkSettings
from obsrvr_ray.network import PUBNET
from obsrvr_ray.pipeline import ExtractOptions
from obsrvr_ray.sinks.layout import OutputSpec

url, out, start, last, every = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
settings = ChunkSettings(tables=("ledgers", "token_transfers"), output=OutputSpec(out), extract=ExtractOptions(PUBNET))
service = FollowerService(FollowerConfig(rpc_url=url, settings=settings, start=start, commit_every=every,
                                         poll_interval=0.05))
print("ready", service.follower.status.next_ledger, flush=True)
while (service.follower.status.committed_through or 0) < last:
    service.follower.step()
print("done", service.status(), flush=True)
"""

KILLED_LAST = CONSECUTIVE[11]  # the follower of the kill test: 12 ledgers, cells of 2
_COMMIT_FILE = re.compile(r"^\d{20}\.json$")


def log_version(out: Path, table: str) -> int:
    """The table's latest version, from its _delta_log files (-1: no table yet)."""
    try:
        names = os.listdir(out / table / "_delta_log")
    except FileNotFoundError:
        return -1
    return max((int(n[:20]) for n in names if _COMMIT_FILE.match(n)), default=-1)


def held(out: Path, every: int) -> dict[str, set[tuple[int, int]]]:
    """Per table, the follower cells its log records as committed (its app transactions)."""
    tables = TableSet(TableLocation(str(out)))
    out_cells = {}
    for name in COMMIT_ORDER:
        table = tables.table(name)
        if table is not None:
            out_cells[name] = {c for c in cells(FIRST, KILLED_LAST, every)
                               if table.transaction_version(app_id(c)) is not None}
    return out_cells


# Where each run is killed: between two tables' commits of one cell (the table ahead, the one
# behind), or at a random moment.
KILL_POINTS = {"transfers, not yet chunks": ("token_transfers", CHUNKS_TABLE),
               "ledgers, not yet transfers": ("ledgers", "token_transfers"), "random": None}


def kill_mid_commit(proc: subprocess.Popen, out: Path, before: int, between: tuple[str, str] | None,
                    rng: random.Random) -> None:
    """SIGKILL the follower once it has committed a whole cell (the chunks table past version
    `before`): at the moment the first table of `between` holds a commit that the second does
    not have yet, or after a random delay."""
    wait_for(lambda: proc.poll() is not None or log_version(out, CHUNKS_TABLE) > max(before, 0), timeout=60,
             what="a committed cell", interval=0.002)
    if between is None:
        time.sleep(rng.uniform(0.0, 0.6))
    else:
        ahead, behind = between
        wait_for(lambda: proc.poll() is not None or log_version(out, ahead) > log_version(out, behind), timeout=60,
                 what="a commit in progress", interval=0.001)
    proc.send_signal(signal.SIGKILL)


@pytest.mark.timeout(150)
def test_follower_killed_while_committing_resumes_to_the_uninterrupted_rows(real_ledgers, exported, tmp_path):
    every = 2
    out, reference = tmp_path / "out", tmp_path / "reference"
    server = serve(real_ledgers, CONSECUTIVE[:12])
    try:
        def child(log: Path) -> subprocess.Popen:
            return subprocess.Popen([sys.executable, "-c", CHILD, server.url, str(out), str(FIRST), str(KILLED_LAST),
                                     str(every)], cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT)

        rng = random.Random(63092982)
        rounds = []
        for n, (where, between) in enumerate(KILL_POINTS.items()):
            log = tmp_path / f"follower-{n}.log"
            before = log_version(out, CHUNKS_TABLE)
            proc = child(log)
            try:
                kill_mid_commit(proc, out, before, between, rng)
            finally:
                end(proc)
                code = proc.wait(timeout=30)
            assert code == -signal.SIGKILL, log.read_text()
            state = held(out, every)
            done = set(TableSet(TableLocation(str(out))).committed())
            partial = sorted({c for got in state.values() for c in got} - done)
            rounds.append((where, len(done), partial, {name: len(got) for name, got in state.items()}))
        print(f"\nkilled follower runs (where, cells done, cells part-committed, cells held per table): {rounds}")
        assert rounds[-1][1] < len(cells(FIRST, KILLED_LAST, every)), "the runs finished before being killed"
        assert any(r[2] for r in rounds[:2]), "no run was killed between two tables' commits of one cell"

        last_log = tmp_path / "follower-last.log"
        final = child(last_log)
        try:
            assert final.wait(timeout=90) == 0, last_log.read_text()
        finally:
            end(final)
        assert f"committed_through': {KILLED_LAST}" in last_log.read_text()

        uninterrupted = FollowerService(FollowerConfig(rpc_url=server.url, settings=follower_settings(str(reference)),
                                                       start=FIRST, commit_every=every, poll_interval=0.05))
        for _ in range(50):
            if uninterrupted.follower.status.committed_through == KILLED_LAST:
                break
            uninterrupted.follower.step()
        assert uninterrupted.status()["committed_through"] == KILLED_LAST
    finally:
        server.stop()

    assert read_transfers(out).equals(exported.filter(pc.less_equal(exported["ledger_sequence"], KILLED_LAST)))
    assert table_contents(out) == table_contents(reference)
    tables = TableSet(TableLocation(str(out)))
    chunk_rows = tables.read(CHUNKS_TABLE)
    assert chunk_rows.num_rows == len(cells(FIRST, KILLED_LAST, every))  # one row per cell: none committed twice
    assert verify(tables, TABLES) == []
    on_disk = {p.relative_to(out / "token_transfers").as_posix() for p in (out / "token_transfers").rglob("*.parquet")}
    referenced = set(tables.table("token_transfers").file_uris())
    orphans = len([p for p in on_disk if not any(uri.endswith(p) for uri in referenced)])
    print(f"token_transfers files left by the killed runs, in no version (vacuum removes them): {orphans}")
