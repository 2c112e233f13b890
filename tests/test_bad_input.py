"""Bad input: each case names the ledger or object and the cause, the other ledgers still come
out, the command exits non-zero with a summary, and no output file is left half-written."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from stellar_sdk import xdr as X

from obsrvr_ray.cli import main
from obsrvr_ray.errors import BugError
from obsrvr_ray.network import PUBNET
from obsrvr_ray.objectstore import LocalStore
from obsrvr_ray.pipeline import RunReport, stream_ledgers
from obsrvr_ray.rpc_server import LedgerArchive, RpcServer
from obsrvr_ray.sinks.lake_writer import LakeWriter
from obsrvr_ray.sources.base import LedgerRecord
from obsrvr_ray.sources.lake_layout import LakeConfig
from tests.conftest import CONSECUTIVE, free_port

SEQS = range(63092987, 63092992)  # five consecutive real ledgers
BAD = 63092989


def build_lake(root: Path, ledgers: dict[int, bytes]) -> LakeConfig:
    config = LakeConfig(network_passphrase=PUBNET)
    writer = LakeWriter(LocalStore(root), config)
    writer.write_config()
    writer.write(ledgers.items())
    return config


def export(capsys, source: str, out: Path, *extra: str, start: int = SEQS[0], end: int = SEQS[-1]):
    rc = main(["export", "transactions", "--source", source, "--start", str(start), "--end", str(end),
               "--out", str(out), *extra])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def produced(out: Path) -> set[int]:
    return set(pq.read_table(out, columns=["ledger_sequence"]).column(0).to_pylist())


def assert_only_complete_files(directory: Path) -> None:
    assert not [p for p in directory.rglob("*") if p.name.startswith(".") and p.suffix == ".tmp"]


@pytest.fixture
def good(real_ledgers) -> dict[int, bytes]:
    return {s: real_ledgers[s] for s in SEQS}


def test_corrupt_xdr(good, tmp_path, capsys):
    good[BAD] = b"\x00\x00\x00\x07" + good[BAD][4:]  # no LedgerCloseMeta version 7
    config = build_lake(tmp_path / "lake", good)
    rc, out = export(capsys, str(tmp_path / "lake"), tmp_path / "tx.parquet")
    assert rc == 1
    assert f"ledger {BAD} ({tmp_path / 'lake'}/{config.batch_key(BAD)}) [decode]" in out
    assert "invalid LedgerCloseMeta XDR" in out
    assert "4 ok, 1 failed" in out and "FAILED" in out
    assert produced(tmp_path / "tx.parquet") == set(SEQS) - {BAD}
    assert_only_complete_files(tmp_path)


def test_tampered_header_fails_its_own_hash(good, tmp_path, capsys):
    data = bytearray(good[BAD])
    data[200:232] = b"\xff" * 32  # inside the header (bucket list hash)
    good[BAD] = bytes(data)
    build_lake(tmp_path / "lake", good)
    rc, out = export(capsys, str(tmp_path / "lake"), tmp_path / "tx.parquet")
    assert rc == 1
    assert f"ledger {BAD}" in out and "[validate]: header hash mismatch" in out
    assert produced(tmp_path / "tx.parquet") == set(SEQS) - {BAD}


def test_truncated_xdr(good, tmp_path, capsys):
    good[BAD] = good[BAD][: len(good[BAD]) // 2]
    build_lake(tmp_path / "lake", good)
    rc, out = export(capsys, str(tmp_path / "lake"), tmp_path / "tx.parquet")
    assert rc == 1
    assert f"ledger {BAD}" in out and "[decode]: invalid LedgerCloseMeta XDR" in out
    assert "unexpected end of data" in out or "exceeds remaining input length" in out
    assert "4 ok, 1 failed" in out
    assert produced(tmp_path / "tx.parquet") == set(SEQS) - {BAD}


def test_truncated_zstd_frame(good, tmp_path, capsys):
    config = build_lake(tmp_path / "lake", good)
    obj = tmp_path / "lake" / config.batch_key(BAD)
    obj.write_bytes(obj.read_bytes()[:-200])
    rc, out = export(capsys, str(tmp_path / "lake"), tmp_path / "tx.parquet")
    assert rc == 1
    assert f"ledger {BAD} ({obj}) [decode]: truncated zstd frame" in out
    assert produced(tmp_path / "tx.parquet") == set(SEQS) - {BAD}


def test_missing_object(good, tmp_path, capsys):
    config = build_lake(tmp_path / "lake", good)
    (tmp_path / "lake" / config.batch_key(BAD)).unlink()
    rc, out = export(capsys, str(tmp_path / "lake"), tmp_path / "tx.parquet")
    assert rc == 1
    assert f"ledger {BAD} ({tmp_path / 'lake' / config.batch_key(BAD)}) [source]: object not found" in out
    assert produced(tmp_path / "tx.parquet") == set(SEQS) - {BAD}


def test_wrong_network_passphrase(good, tmp_path, capsys):
    build_lake(tmp_path / "lake", good)
    rc, out = export(capsys, str(tmp_path / "lake"), tmp_path / "tx.parquet", "--network", "testnet")
    assert rc == 1
    assert "0 ok, 5 failed" in out
    assert f"ledger {BAD}" in out and "wrong network passphrase" in out
    assert "Test SDF Network ; September 2015" in out
    assert produced(tmp_path / "tx.parquet") == set()


def test_an_object_holding_another_ledger_yields_each_ledger_once(real_ledgers, tmp_path, capsys):
    """The object of 63092999 copied over that of 63092998: 63092998 fails, naming the object and
    why, and 63092999 comes out once, in both tables."""
    ledgers = {s: real_ledgers[s] for s in CONSECUTIVE}
    config = build_lake(tmp_path / "lake", ledgers)
    clean = {}
    for table in ("token-transfers", "transactions"):
        rc, out = export_table(capsys, table, tmp_path / "lake", tmp_path / f"clean-{table}.parquet")
        assert rc == 0, out
        clean[table] = pq.read_table(tmp_path / f"clean-{table}.parquet")
    key = config.batch_key(63092998)
    (tmp_path / "lake" / key).write_bytes((tmp_path / "lake" / config.batch_key(63092999)).read_bytes())
    keys = {"token-transfers": ["ledger_sequence", "event_index"], "transactions": ["transaction_hash"]}
    for table, unique in keys.items():
        out_file = tmp_path / f"{table}.parquet"
        rc, out = export_table(capsys, table, tmp_path / "lake", out_file)
        assert rc == 1
        assert "19 ok, 1 failed" in out
        assert (f"ledger 63092998 ({tmp_path / 'lake' / key}) [validate]: object {key} holds ledger 63092999, "
                "outside its range 63092998-63092998") in out
        rows = pq.read_table(out_file)
        assert rows.group_by(unique).aggregate([]).num_rows == rows.num_rows  # no row twice
        expected = clean[table].filter(pc.not_equal(clean[table]["ledger_sequence"], 63092998))
        assert rows.sort_by([(c, "ascending") for c in unique]).equals(
            expected.sort_by([(c, "ascending") for c in unique]))


def export_table(capsys, table: str, lake: Path, out: Path) -> tuple[int, str]:
    rc = main(["export", table, "--source", str(lake), "--start", str(CONSECUTIVE[0]),
               "--end", str(CONSECUTIVE[-1]), "--out", str(out)])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def test_a_ledger_a_source_repeats_stops_the_range_rather_than_write_it_twice(good):
    """Every path to rows (export, backfill chunks, the follower) streams through stream_ledgers:
    a source breaking its contract is a bug, and raises naming the ledger and both origins."""
    first, second = SEQS[0], SEQS[1]
    records = [LedgerRecord(first, "a", data=good[first]), LedgerRecord(second, "b", data=good[second]),
               LedgerRecord(second, "c", data=good[second])]
    report = RunReport(source="test", start=first, end=second)
    with pytest.raises(BugError, match=f"^test: ledger {second} \\(c\\) came after ledger {second} \\(b\\)"):
        list(stream_ledgers(records, PUBNET, report))


def relink(meta: bytes, previous_hash: bytes) -> bytes:
    """A self-consistent ledger (its own header hash is right) that points at another parent."""
    lcm = X.LedgerCloseMeta.from_xdr_bytes(meta)
    entry = lcm.v2.ledger_header
    entry.header.previous_ledger_hash = X.Hash(previous_hash)
    entry.hash = X.Hash(hashlib.sha256(entry.header.to_xdr_bytes()).digest())
    return lcm.to_xdr_bytes()


def test_broken_hash_chain(good, tmp_path, capsys):
    """A ledger that does not link never becomes the link: it and every ledger after it fail
    ("chain broken at N"), so nothing past the break is written; the ledgers before it are."""
    good[BAD] = relink(good[BAD], b"\x11" * 32)
    build_lake(tmp_path / "lake", good)
    rc, out = export(capsys, str(tmp_path / "lake"), tmp_path / "tx.parquet")
    assert rc == 1
    assert f"chain broken at {BAD}: hash chain broken between ledger {BAD - 1} and ledger {BAD}" in out
    for later in range(BAD + 1, SEQS[-1] + 1):
        assert f"ledger {later}" in out and f"chain broken at {BAD}: ledger {later} comes after the break" in out
    assert f"{BAD - SEQS[0]} ok, {SEQS[-1] - BAD + 1} failed" in out
    assert produced(tmp_path / "tx.parquet") == set(range(SEQS[0], BAD))


def test_unreachable_s3(tmp_path, capsys):
    port = free_port()  # nothing listens there
    rc, out = export(capsys, "s3://no-such-bucket/lake", tmp_path / "tx.parquet",
                     "--s3-endpoint-url", f"http://127.0.0.1:{port}", start=BAD, end=BAD + 1)
    # A source that cannot be reached at all is said once, before anything is read (its newest
    # ledger is asked to check the range), not once per ledger.
    assert rc == 1 and len(out.splitlines()) == 1
    assert "s3://no-such-bucket/lake/.config.json: cannot read the lake manifest" in out
    assert "S3 unreachable" in out and f"127.0.0.1:{port}" in out


class _Always500(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST = do_HEAD = do_GET

    def log_message(self, *args):
        return


def test_erroring_s3_names_each_object(tmp_path, capsys):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Always500)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{httpd.server_address[1]}"
        rc, out = export(capsys, "s3://bucket/lake", tmp_path / "tx.parquet", "--s3-endpoint-url", endpoint,
                         start=BAD, end=BAD + 1)
    finally:
        httpd.shutdown()
    assert rc == 1 and len(out.splitlines()) == 1  # said once, naming the object
    assert "s3://bucket/lake/.config.json: cannot read the lake manifest" in out
    assert "500" in out


def test_rpc_unreachable_and_erroring(good, tmp_path, capsys):
    port = free_port()
    rc, out = export(capsys, f"http://127.0.0.1:{port}/", tmp_path / "a.parquet", "--network", "pubnet")
    assert rc == 1 and len(out.splitlines()) == 1  # said once, before anything is read
    assert f"http://127.0.0.1:{port}/" in out and "RPC unreachable (connection refused)" in out

    archive = LedgerArchive()
    archive.add_all(good.values())
    with RpcServer(archive, PUBNET) as server:
        server.faults.http_failures_left = 2  # transient: retried with backoff, then served
        rc, out = export(capsys, server.url, tmp_path / "b.parquet")
        assert rc == 0 and "5 ok, 0 failed" in out
        server.faults.skip = {BAD}  # the node leaves a gap
        rc, out = export(capsys, server.url, tmp_path / "c.parquet")
        assert rc == 1 and f"ledger {BAD}" in out and "skipped this ledger" in out
        assert produced(tmp_path / "c.parquet") == set(SEQS) - {BAD}
        server.faults.skip = set()
        server.faults.http_status = 503  # persistently failing
        rc, out = export(capsys, server.url, tmp_path / "d.parquet", "--network", "pubnet")
        assert rc == 1 and "HTTP 503" in out
