"""The live follower and the hash chain, over the 320 real protocol-19 testnet ledgers served by a
real getLedgers server: when the node switches to another chain from some height (it restarted
on another network's history, a fork), the follower holds at the last good ledger, commits and
publishes nothing of the other chain, says so on /health/ready (real HTTP, uvicorn), /health and
/metrics, and goes on once a ledger links again, from the node or from the data lake; the
dataset then equals a clean run's. Also: a restarted follower links to the dataset's last
ledger, and the readiness probe answers within its bound while the follower does not answer.

The other chain is the real ledgers from the switch on, each header's previousLedgerHash
rewritten to link to the ledger before it in that chain (and its hash recomputed): every ledger
of it is valid on its own and the chain links inside itself, only its first ledger does not
link to the real one before it. The follower is stepped by hand (FollowerService, no Ray), as in
tests/test_live_follower.py, so each case is deterministic.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pyarrow as pa
import pytest
import requests
import xdrlib3
from prometheus_client.parser import text_string_to_metric_families
from stellar_sdk import xdr as X

from obsrvr_ray.chunks.process import ChunkSettings
from obsrvr_ray.ledger.hashing import header_hash
from obsrvr_ray.live.service import FollowerConfig, FollowerService
from obsrvr_ray.network import resolve_passphrase
from obsrvr_ray.objectstore import LocalStore
from obsrvr_ray.pipeline import ExtractOptions
from obsrvr_ray.query import TableReader
from obsrvr_ray.rpc_server import LedgerArchive, RpcServer
from obsrvr_ray.schema import TOKEN_TRANSFERS
from obsrvr_ray.security.security_settings import SecuritySettings
from obsrvr_ray.serve.api import create_app
from obsrvr_ray.serve.http_security import build_guard
from obsrvr_ray.sinks.lake_writer import LakeWriter, read_ledger_file
from obsrvr_ray.sinks.layout import OutputSpec
from obsrvr_ray.sources.lake_layout import LakeConfig
from obsrvr_ray.sources.open import SourceOptions
from tests import conftest
from tests.test_security_support import Server

TESTNET = resolve_passphrase("testnet")
COUNT = 48  # the first 48 real testnet ledgers: cells of 8
CELL = 8
TABLES = ("ledgers", "transactions", "token_transfers")


@pytest.fixture(scope="module")
def chain() -> dict[int, bytes]:
    return read_chain()


def read_chain() -> dict[int, bytes]:
    """The first COUNT real testnet ledgers by sequence (read in place)."""
    out: dict[int, bytes] = {}
    for path in conftest.testnet_ledger_files()[:COUNT]:
        out.update(read_ledger_file(path))
    assert len(out) == COUNT and min(out) == FIRST and max(out) - min(out) == COUNT - 1
    return out


def header_span(meta: bytes) -> tuple[int, int]:
    """Where the LedgerHeaderHistoryEntry sits in a LedgerCloseMeta (after its version and ext)."""
    unpacker = xdrlib3.Unpacker(meta)
    if unpacker.unpack_int() >= 1:
        X.LedgerCloseMetaExt.unpack(unpacker)
    begin = unpacker.get_position()
    X.LedgerHeaderHistoryEntry.unpack(unpacker)
    return begin, unpacker.get_position()


def other_chain(chain: dict[int, bytes], switch: int) -> dict[int, bytes]:
    """The ledgers from `switch` on, as another chain: the first one's previousLedgerHash is not
    the real ledger's before it, and each later one links to the one before it in this chain."""
    out, previous = {}, hashlib.sha256(b"another chain").digest()
    for seq in sorted(s for s in chain if s >= switch):
        meta = chain[seq]
        begin, end = header_span(meta)
        entry = X.LedgerHeaderHistoryEntry.from_xdr_bytes(meta[begin:end])
        entry.header.previous_ledger_hash = X.Hash(previous)
        previous = header_hash(entry.header)
        entry.hash = X.Hash(previous)
        rewritten = entry.to_xdr_bytes()
        assert len(rewritten) == end - begin
        out[seq] = meta[:begin] + rewritten + meta[end:]
    return out


FIRST = 1410048  # the first testnet ledger


def service(url: str, dataset: Path, lake: str | None = None) -> FollowerService:
    settings = ChunkSettings(tables=TABLES, output=OutputSpec(str(dataset)), extract=ExtractOptions(TESTNET))
    config = FollowerConfig(rpc_url=url, settings=settings, start=FIRST, lake=lake, commit_every=CELL,
                            lake_options=SourceOptions(network_passphrase=TESTNET), maintenance=None)
    return FollowerService(config)


def serve(ledgers: dict[int, bytes]) -> RpcServer:
    archive = LedgerArchive()
    archive.add_all(ledgers[s] for s in sorted(ledgers))
    return RpcServer(archive, TESTNET).start()


def switch_to(server: RpcServer, ledgers: dict[int, bytes]) -> None:
    """The node comes back serving `ledgers` (the same heights, possibly another chain)."""
    archive = LedgerArchive()
    archive.add_all(ledgers[s] for s in sorted(ledgers))
    server.archive = archive


def steps(svc: FollowerService, n: int) -> None:
    for _ in range(n):
        svc.follower.step()


def caught_up(svc: FollowerService, last: int, limit: int = 30) -> None:
    for _ in range(limit):
        svc.follower.step()
        if (svc.follower.status.committed_through or 0) >= last:
            return
    raise AssertionError(f"not caught up to {last}: {svc.status()}")


def snapshot(dataset: Path) -> dict[str, list[dict]]:
    """Every table's rows in a stable order, and the failures."""
    reader = TableReader(str(dataset))
    out = {}
    for table in TABLES:
        rows = reader.read(table).to_pylist()
        out[table] = sorted(rows, key=lambda r: tuple(str(r[k]) for k in sorted(r)))
    failures = reader.dataset("failures")
    out["failures"] = failures.to_table().to_pylist() if failures is not None else []
    return out


@pytest.fixture(scope="module")
def clean_run(chain, tmp_path_factory) -> dict[str, list[dict]]:
    """The dataset a follower builds from the real chain alone."""
    dataset = tmp_path_factory.mktemp("clean") / "out"
    server = serve(chain)
    try:
        svc = service(server.url, dataset)
        caught_up(svc, max(chain))
    finally:
        server.stop()
    clean = snapshot(dataset)
    assert len(clean["ledgers"]) == COUNT and clean["failures"] == []
    assert clean["token_transfers"], "the range has token transfers to compare"
    return clean


class InProcessFollower:
    """The API's view of a FollowerService running in this process (what the Serve deployment
    Follower answers through its handle)."""

    def __init__(self, svc: FollowerService) -> None:
        self.svc = svc

    async def status(self) -> dict | None:
        return self.svc.status()

    async def after(self, ledger: int, timeout: float) -> list[tuple[int, pa.Table]]:
        await asyncio.sleep(min(timeout, 0.5))
        return []

    async def recent(self, after: int | None) -> pa.Table:
        return self.svc.recent_table(after)


def api_server(dataset: Path, live) -> Server:
    guard, routers, secure = build_guard(SecuritySettings(dev_mode=True, bind_hosts=("127.0.0.1",)))
    return Server(secure(create_app(TableReader(str(dataset)), live, guard, extra_routers=routers)))


def get(server: Server, path: str) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        return session.get(f"{server.url}{path}", timeout=10)


def gauge(text: str, name: str) -> float:
    (value,) = [s.value for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]
    return value


def test_a_feed_that_switches_chain_stops_the_follower_until_the_chain_links_again(chain, clean_run, tmp_path):
    first, last = min(chain), max(chain)
    switch = first + 2 * CELL + 3  # inside a cell: the cell's first ledgers are good, the rest is not
    other = other_chain(chain, switch)
    dataset = tmp_path / "out"
    server = serve({s: chain[s] for s in chain if s < switch})
    try:
        svc = service(server.url, dataset)
        published: list[int] = []
        add = svc.follower.publish
        svc.follower.publish = lambda seq, rows: (published.append(seq), add(seq, rows))
        steps(svc, 5)
        assert svc.status()["next_ledger"] == switch and svc.status()["committed_through"] == first + 2 * CELL - 1
        switch_to(server, {**{s: chain[s] for s in chain if s < switch}, **other})  # the node's new chain
        steps(svc, 5)
        status = svc.status()
        assert status["state"] == "chain_broken" and status["chain_broken_at"] == switch
        assert status["next_ledger"] == switch and status["committed_through"] == first + 2 * CELL - 1
        assert status["last_error"].startswith(f"chain broken at {switch}: hash chain broken between ledger "
                                               f"{switch - 1} and ledger {switch}")
        assert status["failures"] == 0
        assert max(published) == switch - 1  # nothing of the other chain reached subscribers
        committed = snapshot(dataset)
        assert max(r["sequence"] for r in committed["ledgers"]) == first + 2 * CELL - 1
        assert committed["failures"] == []
        with api_server(dataset, InProcessFollower(svc)) as api:
            ready = get(api, "/health/ready")
            assert ready.status_code == 503
            assert ready.json() == {"ready": False, "reason": f"chain broken at {switch}"}
            health = get(api, "/health").json()
            assert health["follower"]["chain_broken_at"] == switch
            assert health["reason"].startswith(f"chain broken at {switch}: hash chain broken")
            assert gauge(get(api, "/metrics").text, "follower_chain_broken_ledger") == switch

            switch_to(server, chain)  # the node serves the real chain again
            caught_up(svc, last)
            status = svc.status()
            assert status["state"] == "live" and status["chain_broken_at"] is None and status["last_error"] is None
            assert get(api, "/health/ready").json() == {"ready": True, "reason": "ok"}
            assert gauge(get(api, "/metrics").text, "follower_chain_broken_ledger") == 0
        assert published == sorted(set(published)) and published[-1] == last
        assert snapshot(dataset) == clean_run
    finally:
        server.stop()


def test_a_restarted_follower_links_to_the_datasets_last_ledger(chain, clean_run, tmp_path):
    """The switch falls right after the last commit, and the follower restarts meanwhile: the
    link comes from the ledgers table (the new follower holds no ledger in memory)."""
    first, last = min(chain), max(chain)
    switch = first + 3 * CELL
    dataset = tmp_path / "out"
    server = serve({s: chain[s] for s in chain if s < switch})
    try:
        caught_up(service(server.url, dataset), switch - 1)
        switch_to(server, {**{s: chain[s] for s in chain if s < switch}, **other_chain(chain, switch)})
        restarted = service(server.url, dataset)
        steps(restarted, 4)
        status = restarted.status()
        assert status["state"] == "chain_broken" and status["chain_broken_at"] == switch
        assert status["committed_through"] is None and status["next_ledger"] == switch
        assert max(r["sequence"] for r in snapshot(dataset)["ledgers"]) == switch - 1
        switch_to(server, chain)
        caught_up(restarted, last)
        assert snapshot(dataset) == clean_run
    finally:
        server.stop()


def test_the_data_lake_relinks_the_chain_while_the_node_stays_on_the_other(chain, clean_run, tmp_path):
    """The node never comes back; the lake (its exporter behind at first) has the real ledgers."""
    first, last = min(chain), max(chain)
    switch = first + 2 * CELL
    lake = tmp_path / "lake"
    writer = LakeWriter(LocalStore(lake), LakeConfig(network_passphrase=TESTNET))
    writer.write_config()
    writer.write((s, chain[s]) for s in sorted(chain) if s < switch)
    dataset = tmp_path / "out"
    server = serve({**{s: chain[s] for s in chain if s < switch}, **other_chain(chain, switch)})
    try:
        svc = service(server.url, dataset, lake=str(lake))
        steps(svc, 5)
        status = svc.status()
        assert status["chain_broken_at"] == switch and status["committed_through"] == switch - 1
        assert f"the data lake has no ledger {switch} that links either" in status["last_error"]
        writer.write((s, chain[s]) for s in sorted(chain) if s >= switch)  # the exporter catches up
        caught_up(svc, last)
        status = svc.status()
        assert status["chain_broken_at"] is None and status["lake_fallbacks"] >= last - switch + 1
        assert snapshot(dataset) == clean_run
    finally:
        server.stop()


class FollowerNotAnswering:
    """A follower restarting: its status never comes (the deployment handle waits for a replica)."""

    async def status(self) -> dict | None:
        await asyncio.Event().wait()

    async def after(self, ledger: int, timeout: float) -> list[tuple[int, pa.Table]]:
        await asyncio.sleep(timeout)
        return []

    async def recent(self, after: int | None) -> pa.Table:
        return TOKEN_TRANSFERS.empty_table()


def test_readiness_answers_within_a_second_while_the_follower_does_not_answer(tmp_path):
    """Kubernetes probes time out at 1 s (issue 15: /health/ready once took over 5 s while the
    follower restarted); /health/live never asks the follower."""
    with api_server(tmp_path / "out", FollowerNotAnswering()) as api:
        for _ in range(3):
            began = time.monotonic()
            ready = get(api, "/health/ready")
            took = time.monotonic() - began
            assert ready.status_code == 503 and ready.json()["reason"].startswith("follower not answering")
            assert took < 1.0, took
        assert get(api, "/health/live").status_code == 200
