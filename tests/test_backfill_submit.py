"""The backfill as a cluster runs it: submitted with `ray job submit` (settings from a YAML file,
flags overriding it), between S3 buckets (moto's server) in all three formats, through an S3
outage, and from a Stellar RPC node."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from obsrvr_ray import cli
from obsrvr_ray.network import PUBNET
from obsrvr_ray.objectstore import S3Options, S3Store
from obsrvr_ray.query import TableReader
from obsrvr_ray.rpc_server import LedgerArchive, RpcServer
from obsrvr_ray.sinks.lake_writer import LakeWriter
from obsrvr_ray.sources.lake_layout import LakeConfig
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.tableset import TableSet
from tests.backfill_helpers import committed, read_transfers, run_backfill, sort_transfers, start_backfill, wait_for
from tests.conftest import CONSECUTIVE, REPO, free_port, readme_facts, wait_for_port

pytestmark = pytest.mark.timeout(300)


def test_ray_job_submit_runs_the_backfill_on_the_cluster(ray_head, real_lake, tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "backfill.yaml"
    config.write_text(
        f"source: {{type: datalake, url: '{real_lake}'}}\n"
        "range: {start_ledger: 63092982, end_ledger: 63092985}\n"
        "processing: {batch_size: 64, concurrent_readers: 2}\n"
        "filters: {event_types: [transfer, mint, burn]}\n"
        f"output: {{path: '{out}', tables: [token_transfers, ledgers], partition_by: [date, asset_code]}}\n"
        "metrics: {progress_interval: 1}\n"
    )
    ray_cli = str(Path(sys.executable).with_name("ray"))
    proc = subprocess.run(
        [ray_cli, "job", "submit", "--address", ray_head.dashboard, "--working-dir", str(REPO), "--",
         sys.executable, "-m", "obsrvr_ray.jobs.backfill", "--config", str(config), "--batch-size", "2"],
        cwd=REPO, env=ray_head.env, capture_output=True, text=True, timeout=240,
    )
    logs = proc.stdout + proc.stderr
    assert proc.returncode == 0, logs
    assert "succeeded" in logs and "status     OK" in logs
    assert "ledgers/s" in logs and '"event": "chunk_committed"' in logs  # progress and JSON logs in the job log
    transfers = read_transfers(out)
    assert set(transfers["event_topic"].to_pylist()) <= {"transfer", "mint", "burn"} and transfers.num_rows > 1000
    assert transfers["ledger_sequence"].to_pylist() == sorted(transfers["ledger_sequence"].to_pylist())
    assert {transfers["ledger_sequence"][0].as_py(), transfers["ledger_sequence"][-1].as_py()} == {63092982, 63092985}
    assert len(committed(out)) == 2  # --batch-size 2 beat the file's 64
    native = list((out / "token_transfers").glob("date=*/asset_code=__HIVE_DEFAULT_PARTITION__/*"))
    assert native, "XLM has no asset code: its rows sit in the null partition"
    ledgers = TableReader(str(out)).read("ledgers")
    assert sorted(ledgers["sequence"].to_pylist()) == list(range(63092982, 63092986))


@pytest.fixture(scope="module")
def s3_lake(real_ledgers, s3_endpoint) -> str:
    store = S3Store("backfill-src", "lake", S3Options(endpoint_url=s3_endpoint, region="us-east-1"))
    store.client.create_bucket(Bucket="backfill-src")
    store.client.create_bucket(Bucket="backfill-out")
    writer = LakeWriter(store, LakeConfig(network_passphrase=PUBNET, ledgers_per_batch=2, batches_per_partition=4))
    writer.write_config()
    writer.write((s, real_ledgers[s]) for s in CONSECUTIVE[:8])
    return "s3://backfill-src/lake"


def test_from_s3_to_s3_in_parquet_json_lines_and_csv(ray_head, s3_lake, s3_endpoint, real_lake, tmp_path):
    first, last = CONSECUTIVE[0], CONSECUTIVE[7]
    out = "s3://backfill-out/run"
    args = ("--source", s3_lake, "--s3-endpoint-url", s3_endpoint, "--s3-region", "us-east-1",
            "--start", str(first), "--end", str(last), "--batch-size", "3", "--out", out,
            "--out-s3-endpoint-url", s3_endpoint, "--out-s3-region", "us-east-1",
            "--formats", "parquet,jsonl,csv", "--compression", "snappy", "--partition-by", "event_type")
    proc = run_backfill(ray_head, *args, "--verify-output")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # lake batches of 2 ledgers, partitions of 8: --batch-size 3 is a grid of 4 (two whole batches),
    # so 63092982-63092989 is cut 82-83 | 84-87 | 88-89
    assert "chunks     3 committed now" in proc.stdout

    reader = TableReader(out, S3Options(endpoint_url=s3_endpoint, region="us-east-1"))
    parquet = sort_transfers(reader.read("token_transfers"))
    exported = tmp_path / "export.parquet"
    assert cli.main(["export", "token-transfers", "--source", str(real_lake), "--start", str(first), "--end",
                     str(last), "--out", str(exported)]) == 0
    assert parquet.equals(sort_transfers(pq.read_table(exported)))

    store = S3Store("backfill-out", "run", S3Options(endpoint_url=s3_endpoint, region="us-east-1"))
    keys = list(store.list())
    lines = [json.loads(line) for k in keys if k.startswith("jsonl/token_transfers/")
             for line in store.get(k).decode().splitlines()]
    assert sorted((r["ledger_sequence"], r["event_index"], r["amount_raw"]) for r in lines) == [
        (r["ledger_sequence"], r["event_index"], r["amount_raw"]) for r in parquet.to_pylist()]
    csv_rows = sum(pacsv.read_csv(pa.py_buffer(store.get(k))).num_rows for k in keys
                   if k.startswith("csv/token_transfers/"))
    assert csv_rows == parquet.num_rows
    assert {"jsonl/analytics/asset_volume_daily.jsonl", "csv/analytics/event_type_counts.csv"} <= set(keys)

    again = run_backfill(ray_head, *args)
    assert again.returncode == 0 and "0 committed now, 3 committed earlier (skipped)" in again.stdout, again.stdout
    data = [k for k in keys if "/_delta_log/" not in k and not k.startswith("analytics/")]
    assert sorted(k for k in store.list() if "/_delta_log/" not in k and not k.startswith("analytics/")) == data


def _moto(port: int, real_ledgers) -> subprocess.Popen:
    """moto's S3 server on `port`, holding a lake of CONSECUTIVE[:4]."""
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    store = S3Store("outage", "lake", S3Options(endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1"))
    store.client.create_bucket(Bucket="outage")
    writer = LakeWriter(store, LakeConfig(network_passphrase=PUBNET))
    writer.write_config()
    writer.write((s, real_ledgers[s]) for s in CONSECUTIVE[:4])
    return server


def test_an_unavailable_source_leaves_chunks_for_the_rerun_not_failures(ray_head, real_ledgers, tmp_path):
    port = free_port()
    out = tmp_path / "out"
    args = ("--source", "s3://outage/lake", "--s3-endpoint-url", f"http://127.0.0.1:{port}", "--s3-region",
            "us-east-1", "--start", str(CONSECUTIVE[0]), "--end", str(CONSECUTIVE[3]), "--batch-size", "1",
            "--source-patience", "3", "--out", str(out))
    server = _moto(port, real_ledgers)
    log = tmp_path / "run.log"
    try:
        driver = start_backfill(ray_head, *args, log=log)
        wait_for(lambda: '"event": "run_started"' in log.read_text(), what="the driver's plan")
    finally:
        server.terminate()  # the store goes away once the driver has read the lake's manifest
        server.wait(timeout=10)
    assert driver.wait(timeout=120) == 1, log.read_text()
    text = log.read_text()
    assert "source unavailable for 3 s" in text and '"event": "chunk_retry"' in text
    assert "S3 unreachable" in text and "chunks not committed: run the same command again" in text
    assert TableSet(TableLocation(str(out))).failures().num_rows == 0  # an outage is not a ledger's failure
    assert len(committed(out)) < 4
    server = _moto(port, real_ledgers)
    try:
        rerun = run_backfill(ray_head, *args)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert len(committed(out)) == 4
    assert read_transfers(out)["ledger_sequence"].unique().to_pylist() == list(CONSECUTIVE[:4])


@pytest.fixture(scope="module")
def rpc_url(real_ledgers):
    archive = LedgerArchive()
    archive.add_all(real_ledgers[s] for s in CONSECUTIVE[:6])
    with RpcServer(archive, PUBNET) as server:
        yield server.url


def test_from_a_stellar_rpc_node(ray_head, rpc_url, real_lake, tmp_path):
    first, last = CONSECUTIVE[0], CONSECUTIVE[5]
    out = tmp_path / "out"
    proc = run_backfill(ray_head, "--source", rpc_url, "--source-type", "rpc", "--start", str(first), "--end",
                        str(last), "--batch-size", "2", "--tables", "token_transfers,transactions", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "chunks     3 committed now" in proc.stdout
    exported = tmp_path / "export.parquet"
    assert cli.main(["export", "token-transfers", "--source", str(real_lake), "--start", str(first), "--end",
                     str(last), "--out", str(exported)]) == 0
    assert read_transfers(out).equals(sort_transfers(pq.read_table(exported)))
    transactions = TableReader(str(out)).read("transactions")
    facts = readme_facts()
    assert transactions.num_rows == sum(int(facts[s]["txs"]) for s in range(first, last + 1))
