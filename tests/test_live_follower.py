"""The live follower's loop against a real getLedgers server over HTTP and a real dataset on
disk: catching up, gaps, retention (the data lake fallback), RPC failures and restarts. No Ray:
FollowerService is the actor's body, stepped by hand here so each case is deterministic."""

from __future__ import annotations

import threading

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from stellar_sdk import xdr as X

from obsrvr_ray.chunks.process import ChunkSettings
from obsrvr_ray.errors import BugError
from obsrvr_ray.live.service import FollowerConfig, FollowerService
from obsrvr_ray.network import SANDBOX
from obsrvr_ray.objectstore import LocalStore
from obsrvr_ray.pipeline import ExtractOptions
from obsrvr_ray.query import TableReader
from obsrvr_ray.rpc_server import LedgerArchive, RpcServer
from obsrvr_ray.sinks.lake_writer import LakeWriter
from obsrvr_ray.sinks.layout import OutputSpec
from obsrvr_ray.sources.lake_layout import LakeConfig
from obsrvr_ray.sources.open import SourceOptions
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.tableset import TableSet
from obsrvr_ray.ttp import derive, transfer_table

LEDGERS = 18  # sandbox ledgers 2..19: commit cells of 4 end at 3, 7, 11, 15 and 19


@pytest.fixture
def lake(ledgers, tmp_path) -> str:
    root = tmp_path / "lake"
    writer = LakeWriter(LocalStore(root), LakeConfig(network_passphrase=SANDBOX))
    writer.write_config()
    writer.write(ledgers.items())
    return str(root)


def serve(ledgers: dict[int, bytes], upto: int, retention: int | None = None) -> tuple[RpcServer, LedgerArchive]:
    archive = LedgerArchive(retention=retention)
    archive.add_all(ledgers[s] for s in sorted(ledgers) if s <= upto)
    return RpcServer(archive, SANDBOX).start(), archive


def service(url: str, dataset, lake: str | None = None, commit_every: int = 4) -> FollowerService:
    settings = ChunkSettings(tables=("ledgers", "token_transfers"), output=OutputSpec(str(dataset)),
                             extract=ExtractOptions(SANDBOX))
    config = FollowerConfig(rpc_url=url, settings=settings, start=2, lake=lake, commit_every=commit_every,
                            lake_options=SourceOptions(network_passphrase=SANDBOX))
    return FollowerService(config)


def run_until_caught_up(svc: FollowerService, latest: int, limit: int = 50) -> None:
    for _ in range(limit):
        svc.follower.step()
        if svc.follower.status.next_ledger > latest:
            break


def stored(dataset) -> pa.Table:
    return TableReader(str(dataset)).read("token_transfers")


def assert_matches(table: pa.Table, expected: dict[int, list[dict]], seqs) -> None:
    order = pc.sort_indices(table, sort_keys=[("ledger_sequence", "ascending"), ("event_index", "ascending")])
    rows = table.take(order).to_pylist()
    want = [r for s in seqs for r in expected[s]]
    assert len(rows) == len(want)
    for got, exp in zip(rows, want, strict=True):
        assert {k: got[k] for k in exp} == exp


def test_catches_up_commits_and_publishes_in_order(ledgers, expected, tmp_path):
    server, _ = serve(ledgers, upto=19)
    try:
        svc = service(server.url, tmp_path / "out")
        published = []
        svc.follower.publish = lambda seq, rows: published.append(seq)
        run_until_caught_up(svc, 19)
        status = svc.status()
        assert status["state"] == "live" and status["lag"] == 0 and status["committed_through"] == 19
        assert published == list(range(2, 20))
        assert_matches(stored(tmp_path / "out"), expected, range(2, 20))
    finally:
        server.stop()


def test_ledger_lookups_read_the_committed_rows(ledgers, tmp_path):
    """What GET /v1/ledgers/{sequence} answers: the committed row of that ledger, found from the
    files whose ledger range holds it; nothing for a ledger the dataset does not hold."""
    server, _ = serve(ledgers, upto=19)
    try:
        run_until_caught_up(service(server.url, tmp_path / "out"), 19)
    finally:
        server.stop()
    reader = TableReader(str(tmp_path / "out"))
    committed = {row["sequence"]: row for row in reader.read("ledgers").to_pylist()}
    assert sorted(committed) == list(range(2, 20))
    for seq in (2, 3, 11, 12, 19):
        assert reader.ledger(seq) == committed[seq]
    assert reader.ledger(20) is None and reader.ledger(1) is None


def test_gap_in_a_page_is_filled_from_the_lake(ledgers, expected, lake, tmp_path):
    server, _ = serve(ledgers, upto=19)
    server.faults.skip = {7, 8}  # the node leaves them out of every page
    try:
        svc = service(server.url, tmp_path / "out", lake=lake)
        run_until_caught_up(svc, 19)
        status = svc.status()
        assert status["gaps_filled"] == 2 and status["lake_fallbacks"] == 2 and status["failures"] == 0
        assert_matches(stored(tmp_path / "out"), expected, range(2, 20))
    finally:
        server.stop()


def test_gap_without_a_lake_is_recorded_not_skipped(ledgers, expected, tmp_path):
    server, _ = serve(ledgers, upto=19)
    server.faults.skip = {9}
    try:
        svc = service(server.url, tmp_path / "out")
        run_until_caught_up(svc, 19)
        assert svc.status()["failures"] == 1
        failures = TableReader(str(tmp_path / "out")).dataset("failures").to_table().to_pylist()
        assert [(f["sequence"], f["stage"]) for f in failures] == [(9, "source")]
        assert "missing from getLedgers pages" in failures[0]["error"]
        assert_matches(stored(tmp_path / "out"), expected, [s for s in range(2, 20) if s != 9])
    finally:
        server.stop()


def test_ledgers_older_than_retention_come_from_the_lake(ledgers, expected, lake, tmp_path):
    server, archive = serve(ledgers, upto=19, retention=6)  # the node keeps 14..19
    try:
        assert archive.window() == (14, 19)
        svc = service(server.url, tmp_path / "out", lake=lake)
        run_until_caught_up(svc, 19)
        assert svc.status()["lake_fallbacks"] == 12
        assert_matches(stored(tmp_path / "out"), expected, range(2, 20))
    finally:
        server.stop()


def test_rpc_down_degrades_then_recovers(ledgers, expected, tmp_path):
    server, archive = serve(ledgers, upto=11)
    try:
        svc = service(server.url, tmp_path / "out")
        run_until_caught_up(svc, 11)
        server.faults.http_status = 503
        for _ in range(3):
            svc.follower.step()
        status = svc.status()
        assert status["state"] == "degraded" and "503" in status["last_error"]
        server.faults.http_status = None
        archive.add_all(ledgers[s] for s in range(12, 20))
        svc.follower.rpc.breaker.reset_after = 0.0
        run_until_caught_up(svc, 19)
        assert svc.status()["state"] == "live"
        assert_matches(stored(tmp_path / "out"), expected, range(2, 20))
    finally:
        server.stop()


def test_restart_resumes_after_the_last_commit_without_duplicates(ledgers, expected, tmp_path):
    """Only complete cells are committed: a follower stopped inside a cell leaves it to the next
    one, which reads it again from its first ledger."""
    server, _ = serve(ledgers, upto=19)
    try:
        first = service(server.url, tmp_path / "out", commit_every=4)
        for _ in range(4):
            first.follower.step()  # 2-3, 4-7, 8-11: three cells committed; then 12-15
        first.follower.page_size = 2
        assert first.status()["committed_through"] == 15
        first.follower.step()  # 16-17: half a cell, published but not committed
        assert first.status()["next_ledger"] == 18 and first.status()["committed_through"] == 15
        second = service(server.url, tmp_path / "out")
        assert second.status()["next_ledger"] == 16
        run_until_caught_up(second, 19)
        assert second.status()["committed_through"] == 19
        assert_matches(stored(tmp_path / "out"), expected, range(2, 20))
    finally:
        server.stop()


def test_two_followers_at_once_commit_each_cell_once(ledgers, expected, tmp_path):
    """An upgrade may run the new follower before the old one stops: same grid, same ranges,
    and the dataset admits each range once."""
    server, _ = serve(ledgers, upto=19)
    try:
        a = service(server.url, tmp_path / "out")
        b = service(server.url, tmp_path / "out")
        for _ in range(10):
            a.follower.step()
            b.follower.step()
        assert a.status()["committed_through"] == b.status()["committed_through"] == 19
        assert_matches(stored(tmp_path / "out"), expected, range(2, 20))
    finally:
        server.stop()


def test_status_reports_the_bulkheads_and_masks_credentials_in_the_rpc_url(ledgers, lake, tmp_path):
    """/health shows this status: an RPC URL carrying an API key (user info, path or query, as
    providers do) must not leak through the error texts, whichever way the RPC fails."""
    server, _ = serve(ledgers, upto=7)
    url = server.url.replace("http://", "http://alice:pa55@") + "v1/KEY123?apikey=s3cret"  # the node ignores them
    svc = service(url, tmp_path / "out", lake=lake)
    run_until_caught_up(svc, 7)
    status = svc.status()
    assert status["committed_through"] == 7
    assert status["bulkheads"] == {"rpc": {"in_use": 0, "limit": 4, "rejected": 0},
                                   "lake": {"in_use": 0, "limit": 8, "rejected": 0}}
    errors = []
    server.faults.http_status = 503
    for _ in range(2):  # answers 503, then the breaker is open
        svc.follower.step()
        errors.append(svc.status()["last_error"])
    server.stop()
    svc.follower.rpc.breaker.reset_after = 0.0
    svc.follower.step()  # unreachable: requests quotes the path and query in its message
    errors.append(svc.status()["last_error"])
    assert "503" in errors[0] and "circuit breaker" in errors[1] and "unreachable" in errors[2]
    for error in errors:
        assert "***" in error
        for secret in ("alice", "pa55", "KEY123", "s3cret"):
            assert secret not in error, error


def test_a_store_that_refuses_commits_degrades_then_recovers(ledgers, expected, tmp_path):
    """A commit the store refuses (here the dataset's folder is not a folder for a while) is a
    failing world: the pages stay pending, the status says why, the next steps commit them."""
    server, _ = serve(ledgers, upto=19)
    out, aside = tmp_path / "out", tmp_path / "aside"
    try:
        svc = service(server.url, out)
        run_until_caught_up(svc, 7)
        out.rename(aside)
        out.write_text("not a folder")
        for _ in range(3):
            svc.follower.step()
        status = svc.status()
        assert status["state"] == "degraded" and status["last_error"].startswith("commit failed: ")
        assert status["committed_through"] == 7
        out.unlink()
        aside.rename(out)
        run_until_caught_up(svc, 19)
        assert svc.status()["state"] == "live" and svc.status()["committed_through"] == 19
        assert_matches(stored(out), expected, range(2, 20))
    finally:
        server.stop()


def test_a_rule_bug_stops_the_follower_naming_where_it_struck(ledgers, tmp_path, monkeypatch):
    """A bug is not a failing world: the follower stops, not ready, the status names the ledger,
    transaction and operation, and nothing is committed for it (no failure row hides it)."""
    def broken(*_args):
        raise AttributeError("injected")

    monkeypatch.setattr(transfer_table, "_Columns", None)  # the Python rules read every ledger
    monkeypatch.setitem(derive.RULES, X.OperationType.PAYMENT, broken)
    server, _ = serve(ledgers, upto=19)
    try:
        settings = ChunkSettings(tables=("ledgers", "token_transfers"), output=OutputSpec(str(tmp_path / "out")),
                                 extract=ExtractOptions(SANDBOX, events_from="operations"))
        svc = FollowerService(FollowerConfig(rpc_url=server.url, settings=settings, start=2, commit_every=4))
        guard = threading.Timer(60, svc.follower.stop)  # the code before this test never stopped
        guard.start()
        try:
            with pytest.raises(BugError, match=r"^ledger \d+ tx [0-9a-f]{64} operation \d+ \(PAYMENT\): "
                                               r"AttributeError: injected$"):
                svc.follower.run()
        finally:
            guard.cancel()
        status = svc.status()
        assert status["state"] == "stopped" and status["last_error"].startswith("BugError: ledger ")
        assert TableSet(TableLocation(str(tmp_path / "out"))).read("failures").num_rows == 0
    finally:
        server.stop()
