"""Every source declares what a run needs before it reads (its network, the grid of its objects,
whether it yields every ledger, its bulkhead, its first and newest ledgers), and a run asks it
instead of looking inside it; workers reopen it from a small picklable spec (issue 12, item 3).

Real sources over real ledgers: a galexie lake on disk and on S3 (moto's server), a Stellar RPC
server speaking getLedgers, a stellar-etl export."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from obsrvr_ray.backfill_settings import BackfillConfig
from obsrvr_ray.chunks.job import resolve
from obsrvr_ray.chunks.plan import plan
from obsrvr_ray.data.ledger_datasource import worker_source
from obsrvr_ray.errors import ConfigError
from obsrvr_ray.network import PUBNET, resolve_passphrase
from obsrvr_ray.objectstore import LocalStore, S3Options, S3Store
from obsrvr_ray.ranges import Grid
from obsrvr_ray.resilience import Bulkhead
from obsrvr_ray.rpc_server import LedgerArchive, RpcServer
from obsrvr_ray.sinks.lake_writer import LakeWriter
from obsrvr_ray.sources.lake_layout import LakeConfig
from obsrvr_ray.sources.open import SourceOptions, SourceSpec
from tests.conftest import CONSECUTIVE, GOLDEN_DIR

ETL_FILE = GOLDEN_DIR / "ledger_transactions.golden"  # stellar-etl's export of ledger 30820015
LAYOUT = LakeConfig(network_passphrase=PUBNET, ledgers_per_batch=2, batches_per_partition=4)


@pytest.fixture(scope="module")
def lake_of_pairs(real_ledgers, tmp_path_factory) -> Path:
    """The 20 consecutive real ledgers in objects of 2 ledgers, partitions of 4 objects."""
    root = tmp_path_factory.mktemp("pairs")
    writer = LakeWriter(LocalStore(root), LAYOUT)
    writer.write_config()
    writer.write((s, real_ledgers[s]) for s in CONSECUTIVE)
    return root


def declared(spec: SourceSpec) -> dict:
    source = spec.open()
    try:
        return {"network": source.network_passphrase, "grid": source.grid, "every_ledger": source.every_ledger,
                "bulkhead": source.bulkhead, "earliest": source.earliest(), "latest": source.latest()}
    finally:
        source.close()


def test_a_lake_declares_its_objects_as_its_grid(lake_of_pairs, real_ledgers, s3_endpoint):
    store = S3Store("pairs", "lake", S3Options(endpoint_url=s3_endpoint, region="us-east-1"))
    store.client.create_bucket(Bucket="pairs")
    writer = LakeWriter(store, LAYOUT)
    writer.write_config()
    writer.write((s, real_ledgers[s]) for s in CONSECUTIVE)
    s3 = SourceOptions(s3_endpoint_url=s3_endpoint, s3_region="us-east-1", anonymous=False, max_concurrent=3)
    for spec in (SourceSpec(str(lake_of_pairs), SourceOptions(max_concurrent=3)), SourceSpec("s3://pairs/lake", s3)):
        found = declared(spec)
        bulkhead = found.pop("bulkhead")
        assert found == {"network": PUBNET, "grid": Grid(2, 8), "every_ledger": True,
                         "earliest": None, "latest": CONSECUTIVE[-1]}, spec
        assert isinstance(bulkhead, Bulkhead) and bulkhead.limit == 3


def test_rpc_and_etl_declare_single_ledgers(real_ledgers):
    archive = LedgerArchive()
    archive.add_all(real_ledgers[s] for s in CONSECUTIVE[:3])
    testnet = resolve_passphrase("testnet")
    with RpcServer(archive, testnet) as server:
        found = declared(SourceSpec(server.url, SourceOptions(max_concurrent=2)))
    bulkhead = found.pop("bulkhead")
    assert found == {"network": testnet, "grid": Grid(1), "every_ledger": False,
                     "earliest": None, "latest": CONSECUTIVE[2]}
    assert isinstance(bulkhead, Bulkhead) and bulkhead.limit == 2
    # stellar-etl records no network: pubnet unless told; a file reads whole, so it knows its first ledger.
    assert declared(SourceSpec(f"etl:{ETL_FILE}")) == {
        "network": PUBNET, "grid": Grid(1), "every_ledger": False, "bulkhead": None,
        "earliest": 30820015, "latest": 30820015}


def test_a_plan_cuts_whole_objects_of_the_source(lake_of_pairs):
    """Chunks of 3 ledgers round up to 2 objects of 2, and stop at each partition of 8."""
    job = resolve(BackfillConfig(source=str(lake_of_pairs), out="/unused", ledgers=((CONSECUTIVE[0], CONSECUTIVE[-1]),),
                                 batch_size=3))
    assert job.grid == Grid(4, 8)
    cells = [u.chunk for u in plan(job.config.ranges, (), job.grid)]
    assert cells[:3] == [(63092982, 63092983), (63092984, 63092987), (63092988, 63092991)]
    assert all(a % 2 == 0 and b % 2 == 1 and a // 8 == b // 8 for a, b in cells)  # whole objects, one partition


def test_a_run_opens_its_source_once_and_hands_workers_a_spec(lake_of_pairs):
    """resolve() checks the range against the source and learns its network and grid from the
    same opening; readers get the spec, which pickles and reopens the same source."""
    with pytest.raises(ConfigError, match=rf"--end {CONSECUTIVE[-1] + 1} is beyond the newest ledger of data lake"):
        resolve(BackfillConfig(source=str(lake_of_pairs), out="/unused",
                               ledgers=((CONSECUTIVE[0], CONSECUTIVE[-1] + 1),)))
    job = resolve(BackfillConfig(source=str(lake_of_pairs), out="/unused", ledgers=((CONSECUTIVE[0], CONSECUTIVE[-1]),),
                                 network="testnet", prefetch=3))
    assert job.source == SourceSpec(str(lake_of_pairs), SourceOptions(network_passphrase=resolve_passphrase("testnet"),
                                                                      prefetch=3))
    assert job.settings.extract.passphrase == resolve_passphrase("testnet")  # an explicit network wins
    shipped = pickle.loads(pickle.dumps(job.source))
    assert shipped == job.source and hash(shipped) == hash(job.source)
    reopened = worker_source(shipped)
    assert worker_source(job.source) is reopened  # one per worker process, reused across chunks
    assert reopened.description == job.source_description and reopened.bulkhead.limit == 3
    # One object: concurrent first decodes in threads trip a CPython 3.11.7 ast bug in xdr.schema's lazy load.
    assert [r.sequence for r in reopened.records(CONSECUTIVE[0], CONSECUTIVE[1])] == list(CONSECUTIVE[:2])
