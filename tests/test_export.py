"""`obsrvr-ray export ledgers|transactions` over every source kind."""

from __future__ import annotations

import threading

import pyarrow.parquet as pq
import pytest

from obsrvr_ray.network import PUBNET
from obsrvr_ray.objectstore import S3Options, S3Store
from obsrvr_ray.rpc_server import LedgerArchive, RpcServer
from obsrvr_ray.schema import LEDGERS, TRANSACTIONS
from obsrvr_ray.sinks.lake_writer import LakeWriter
from obsrvr_ray.sources.lake_layout import LakeConfig
from tests.conftest import CONSECUTIVE, GOLDEN_DIR, readme_facts
from tests.helpers import read_jsonl, run_cli

FIRST, LAST = CONSECUTIVE[0], CONSECUTIVE[-1]


@pytest.fixture(scope="module")
def s3_lake(real_ledgers, s3_endpoint) -> str:
    store = S3Store("export-test", "lake", S3Options(endpoint_url=s3_endpoint, region="us-east-1"))
    store.client.create_bucket(Bucket="export-test")
    writer = LakeWriter(store, LakeConfig(network_passphrase=PUBNET))
    writer.write_config()
    writer.write((s, real_ledgers[s]) for s in CONSECUTIVE)
    return "s3://export-test/lake"


@pytest.fixture(scope="module")
def rpc_url(real_ledgers):
    archive = LedgerArchive()
    archive.add_all(real_ledgers[s] for s in CONSECUTIVE)
    with RpcServer(archive, PUBNET) as server:
        yield server.url


def test_s3_lake_and_rpc_give_identical_transactions(s3_lake, s3_endpoint, rpc_url, tmp_path):
    results = {}

    def export(name: str, *args: str) -> None:
        results[name] = run_cli("export", "transactions", *args, "--start", str(FIRST), "--end", str(LAST),
                                "--out", str(tmp_path / f"{name}.parquet"))

    threads = [
        threading.Thread(target=export, args=("s3", "--source", s3_lake, "--s3-endpoint-url", s3_endpoint)),
        threading.Thread(target=export, args=("rpc", "--source", rpc_url)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, proc in results.items():
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)
        assert "20 ok, 0 failed" in proc.stdout
    s3_table = pq.read_table(tmp_path / "s3.parquet")
    rpc_table = pq.read_table(tmp_path / "rpc.parquet")
    assert s3_table.schema.equals(TRANSACTIONS, check_metadata=False)
    facts = readme_facts()
    assert s3_table.num_rows == sum(int(facts[s]["txs"]) for s in CONSECUTIVE)
    assert s3_table.equals(rpc_table)


def test_ledgers_table_from_the_lake(real_lake, tmp_path, decoded):
    out = tmp_path / "ledgers.jsonl"
    proc = run_cli("export", "ledgers", "--source", str(real_lake), "--start", str(FIRST), "--end",
                   str(FIRST + 2), "--out", str(out), "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    rows = read_jsonl(out)
    assert [r["sequence"] for r in rows] == [FIRST, FIRST + 1, FIRST + 2]
    assert set(rows[0]) == set(LEDGERS.names)
    first = decoded(FIRST)
    assert rows[0]["ledger_hash"] == first.hash.hex()
    assert rows[1]["previous_ledger_hash"] == rows[0]["ledger_hash"]
    assert rows[0]["successful_transaction_count"] + rows[0]["failed_transaction_count"] == len(first.transactions)
    assert rows[0]["transaction_count"] == rows[0]["successful_transaction_count"]
    assert rows[0]["node_id"].startswith("G") and rows[0]["close_meta_version"] == 2


# Every column stellar-etl's one_ledger_txs.golden has and our table shares with it.
GOLDEN_TX_COLUMNS = [
    "account", "account_sequence", "closed_at", "created_at", "extra_signers", "fee_charged", "id",
    "inclusion_fee_bid", "inclusion_fee_charged", "ledger_bounds", "ledger_sequence", "max_fee", "memo",
    "memo_type", "min_account_sequence", "min_account_sequence_age", "min_account_sequence_ledger_gap",
    "non_refundable_resource_fee_charged", "operation_count", "refundable_resource_fee_charged",
    "rent_fee_charged", "resource_fee", "resource_fee_refund", "soroban_resources_archived_entries",
    "soroban_resources_disk_read_bytes", "soroban_resources_instructions", "soroban_resources_read_bytes",
    "soroban_resources_write_bytes", "successful", "time_bounds", "transaction_hash", "transaction_result_code",
    "tx_envelope", "tx_fee_meta", "tx_meta", "tx_result", "tx_signers",
]


def test_transactions_from_etl_export_equal_stellar_etl_golden(tmp_path):
    out = tmp_path / "txs.jsonl"
    proc = run_cli("export", "transactions", "--source", f"etl:{GOLDEN_DIR / 'ledger_transactions.golden'}",
                   "--out", str(out), "--format", "jsonl")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ours = {r["transaction_hash"]: r for r in read_jsonl(out)}
    golden = {r["transaction_hash"]: r for r in read_jsonl(GOLDEN_DIR / "one_ledger_txs.golden")}
    assert set(golden[next(iter(golden))]) == set(GOLDEN_TX_COLUMNS)
    assert set(ours) == set(golden) and len(ours) == 59
    for tx_hash, expected in golden.items():
        for column in GOLDEN_TX_COLUMNS:
            assert ours[tx_hash][column] == expected[column], (tx_hash, column)


def test_generate_export_and_inspect_sandbox_lake(tmp_path):
    """The demo's path: a generated lake exports every table, verifies three ways, inspects."""
    lake = tmp_path / "lake"
    proc = run_cli("generate", "--out", str(lake), "--ledgers", "30", package="obsrvr_sandbox")
    assert proc.returncode == 0, proc.stderr
    assert "generated 30 sandbox ledgers (2…31)" in proc.stdout
    out = tmp_path / "tt.parquet"
    proc = run_cli("export", "token-transfers", "--source", str(lake), "--start", "2", "--end", "31", "--out",
                   str(out), "--verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "network    sandbox" in proc.stdout and "30 ok, 0 failed" in proc.stdout
    assert "verified   30 ledgers three ways: 0 findings" in proc.stdout
    proc = run_cli("inspect", str(out))
    assert proc.returncode == 0 and "by event_topic: fee=" in proc.stdout
