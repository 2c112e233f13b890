"""The export and lake commands as a user runs them, in a child process: building a lake from
every kind of ledger file, following new ledgers until interrupted (or killed), a ledger older
than the RPC node keeps, and one object of an S3 lake failing while the rest come out."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from obsrvr_ray.network import PUBNET, SANDBOX
from obsrvr_ray.objectstore import LocalStore, S3Options, S3Store
from obsrvr_ray.rpc_server import LedgerArchive, RpcServer
from obsrvr_ray.sinks.lake_writer import LakeWriter
from obsrvr_ray.sources.lake_layout import LakeConfig
from obsrvr_ray.sources.lake_source import LakeSource
from obsrvr_sandbox import generate_ledgers
from tests.conftest import CONSECUTIVE, REPO, real_ledger_files
from tests.helpers import run_cli


def test_lake_import_command_reads_every_file_form(real_ledgers, tmp_path):
    """gzip'd raw LedgerCloseMeta, an uncompressed batch, a zstd batch and base64 lines: every
    ledger lands in a galexie lake whose objects hold the original bytes."""
    files = [str(p) for p in real_ledger_files()]
    proc = run_cli("lake", "import", *files, "--out", str(tmp_path / "lake"), "--network", "pubnet")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "lake" / ".config.json").exists()
    source = LakeSource(LocalStore(tmp_path / "lake"))
    assert source.network_passphrase == PUBNET
    for seq, data in real_ledgers.items():
        [record] = list(source.records(seq, seq))
        assert record.data == data, seq
    proc = run_cli("export", "ledgers", "--source", str(tmp_path / "lake"), "--start", str(CONSECUTIVE[0]),
                   "--end", str(CONSECUTIVE[-1]), "--out", str(tmp_path / "ledgers.parquet"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pq.read_table(tmp_path / "ledgers.parquet").column("sequence").to_pylist() == list(CONSECUTIVE)


@pytest.fixture
def feed():
    """A getLedgers server whose archive grows by one sandbox ledger every 0.2 s (6 at first)."""
    ledgers = generate_ledgers(60)
    archive = LedgerArchive()
    archive.add_all(data for _, (_, data) in zip(range(6), ledgers, strict=False))
    stop = threading.Event()

    def close_ledgers() -> None:
        for _, data in ledgers:
            if stop.wait(0.2):
                return
            archive.add(data)

    closer = threading.Thread(target=close_ledgers, daemon=True)
    with RpcServer(archive, SANDBOX) as server:
        closer.start()
        yield server
        stop.set()
    closer.join()


# The command as a foreground process runs it: Python's own SIGINT handler. A shell without job
# control starts a background job with SIGINT ignored (POSIX), and a child of a test run so
# started (a CI harness) inherited that and never saw the test's SIGINT: the hang of earlier runs
# (SigIgn 0x81001007 in both processes). A user's Ctrl-C reaches a foreground command.
AS_AT_A_TERMINAL = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                    "sys.argv[0] = 'obsrvr-ray'; runpy.run_module('obsrvr_ray', run_name='__main__')")


def start_follow(feed: RpcServer, out: Path) -> subprocess.Popen:
    """The child dumps every thread's stack on SIGABRT (faulthandler), for a hang's diagnosis."""
    return subprocess.Popen(
        [sys.executable, "-c", AS_AT_A_TERMINAL, "export", "token-transfers", "--source", feed.url, "--start", "2",
         "--out", str(out), "--flush-every", "3"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"})


def signal_state(pid: int) -> str:
    """The blocked, ignored and caught signal masks of a process (/proc/PID/status)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return " ".join(line.replace("\t", "") for line in lines if line.startswith(("SigBlk", "SigIgn", "SigCgt")))


def wait_for_parts(out: Path, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(out.glob("token_transfers-*.parquet"))) >= count:
            return
        time.sleep(0.1)
    raise TimeoutError(f"fewer than {count} part files in {out} after {timeout}s")


def covered(out: Path) -> list[int]:
    """Ledger ranges of the part files, which must be complete Parquet files."""
    seqs = []
    for part in sorted(out.glob("token_transfers-*.parquet")):
        first, last = (int(x) for x in part.stem.split("-")[1:])
        pq.read_table(part)  # complete: a truncated file has no footer and fails here
        seqs.extend(range(first, last + 1))
    return sorted(seqs)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_export_without_end_follows_until_interrupted(feed, tmp_path, stop):
    """Ctrl-C, or SIGTERM (systemd, Kubernetes): the parts written are whole, the summary printed."""
    out = tmp_path / "follow"
    proc = start_follow(feed, out)
    wait_for_parts(out, 3)
    proc.send_signal(stop)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        # What the hang was: the child's signal masks beside the test process's own (a SIGINT
        # blocked or ignored is inherited), then every thread's stack (SIGABRT, faulthandler).
        state = f"child {signal_state(proc.pid)}; pytest {signal_state(os.getpid())}"
        proc.send_signal(signal.SIGABRT)
        try:
            _, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()  # no process outlives the test
            _, stderr = proc.communicate()
        diagnosis = f"no exit 60 s after {stop.name}; {state}\n{stderr[-6000:]}"
        (REPO / ".pytest-export-hang.txt").write_text(diagnosis)
        pytest.fail(diagnosis)
    assert proc.returncode == 130, stdout + stderr
    assert "export token-transfers" in stdout and "0 failed" in stdout
    seqs = covered(out)
    assert seqs == list(range(2, seqs[-1] + 1)) and len(seqs) >= 9  # no gap, no ledger twice
    table = ds.dataset(out, format="parquet").to_table()
    assert table.num_rows > 0 and set(table.column("ledger_sequence").to_pylist()) <= set(seqs)


def test_a_killed_follow_leaves_only_complete_files(feed, tmp_path):
    """SIGKILL at any moment: the files written so far are whole; nothing visible is partial."""
    out = tmp_path / "follow"
    proc = start_follow(feed, out)
    wait_for_parts(out, 2)
    proc.kill()
    proc.communicate(timeout=30)
    seqs = covered(out)
    assert seqs == list(range(2, seqs[-1] + 1))
    visible = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert all(p.name.startswith("token_transfers-") and p.suffix == ".parquet" for p in visible)
    ds.dataset(out, format="parquet").to_table()  # readers skip hidden temporary names


def test_ledgers_older_than_the_rpc_retention_are_named(real_ledgers, tmp_path):
    archive = LedgerArchive(retention=3)
    archive.add_all(real_ledgers[s] for s in CONSECUTIVE[:6])  # the node keeps the last three
    with RpcServer(archive, PUBNET) as server:
        proc = run_cli("export", "transactions", "--source", server.url, "--start", str(CONSECUTIVE[0]),
                       "--end", str(CONSECUTIVE[5]), "--out", str(tmp_path / "tx.parquet"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    for seq in CONSECUTIVE[:3]:
        assert f"ledger {seq}" in out
    assert f"outside the RPC node's retention window (oldestLedger {CONSECUTIVE[3]}" in out
    assert "3 ok, 3 failed" in out
    seqs = set(pq.read_table(tmp_path / "tx.parquet", columns=["ledger_sequence"]).column(0).to_pylist())
    assert seqs == set(CONSECUTIVE[3:6])


class FailingProxy:
    """Forwards S3 requests to moto, except GETs of keys containing `fail_on`, answered 500."""

    def __init__(self, upstream: str, fail_on: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "GET" and proxy.fail_on in self.path:
                    proxy.failed += 1
                    payload = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
                    self.send_response(500)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward

            def log_message(self, *args: object) -> None:
                return

        self.fail_on = fail_on
        self.failed = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def test_one_erroring_s3_object_fails_its_ledger_only(real_ledgers, s3_endpoint, tmp_path):
    seqs = CONSECUTIVE[:5]
    bad = seqs[2]
    config = LakeConfig(network_passphrase=PUBNET)
    store = S3Store("partial", "lake", S3Options(endpoint_url=s3_endpoint, region="us-east-1"))
    store.client.create_bucket(Bucket="partial")
    writer = LakeWriter(store, config)
    writer.write_config()
    writer.write((s, real_ledgers[s]) for s in seqs)
    proxy = FailingProxy(s3_endpoint, config.batch_key(bad))
    try:
        proc = run_cli("export", "transactions", "--source", "s3://partial/lake", "--s3-endpoint-url", proxy.url,
                       "--start", str(seqs[0]), "--end", str(seqs[-1]), "--out", str(tmp_path / "tx.parquet"))
    finally:
        proxy.close()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert proxy.failed >= 1
    assert f"ledger {bad} (s3://partial/lake/{config.batch_key(bad)}) [source]" in out
    assert "500" in out or "InternalError" in out
    assert "4 ok, 1 failed" in out
    produced = set(pq.read_table(tmp_path / "tx.parquet", columns=["ledger_sequence"]).column(0).to_pylist())
    assert produced == set(seqs) - {bad}
