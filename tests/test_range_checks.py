"""Ranges are checked alike by every command, against the 32-bit ledger sequence and against
what the source holds, before anything is planned or read (issue 15, defects 3 and 7).

The commands run as a user runs them, in a child process, over a lake of the 20 consecutive
real protocol-26 ledgers; a refusal must come at once, in one line, in little memory."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from obsrvr_ray.chunks.plan import Grid, plan
from obsrvr_ray.cli import main
from obsrvr_ray.network import PUBNET
from obsrvr_ray.objectstore import LocalStore, S3Options, S3Store
from obsrvr_ray.rpc_server import LedgerArchive, RpcServer
from obsrvr_ray.sinks.lake_writer import LakeWriter
from obsrvr_ray.sources.lake_layout import LakeConfig
from obsrvr_ray.sources.open import SourceOptions, open_source
from tests.conftest import CONSECUTIVE, REPO, free_port

LAST_UINT32 = 4294967295

# Runs the command given as its arguments and reports, besides its exit code and output, the
# largest resident set of that child alone (RUSAGE_CHILDREN of this wrapper, which has no other child).
# A child that outlives the timeout is killed (and waited for), so it is measured too.
MEASURE = """
import json, resource, subprocess, sys
try:
    proc = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=float(sys.argv[1]))
    result = {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
except subprocess.TimeoutExpired as exc:
    result = {"rc": "killed after the timeout", "stdout": str(exc.stdout)[-2000:], "stderr": str(exc.stderr)[-2000:]}
result["max_rss_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps(result))
"""


def measured(*args: str, timeout: float = 60) -> tuple[dict, float]:
    """The CLI in a child process: its result, its peak memory and the seconds it took."""
    began = time.monotonic()
    wrapper = subprocess.run([sys.executable, "-c", MEASURE, str(timeout), sys.executable, "-m", "obsrvr_ray", *args],
                             cwd=REPO, capture_output=True, text=True, timeout=timeout + 30)
    assert wrapper.returncode == 0, wrapper.stderr[-2000:]
    return json.loads(wrapper.stdout), time.monotonic() - began


@pytest.fixture(scope="module")
def lake20(real_ledgers, tmp_path_factory) -> Path:
    """A galexie lake of the 20 consecutive real protocol-26 ledgers, 63092982-63093001."""
    root = tmp_path_factory.mktemp("lake20")
    writer = LakeWriter(LocalStore(root), LakeConfig(network_passphrase=PUBNET))
    writer.write_config()
    writer.write((s, real_ledgers[s]) for s in CONSECUTIVE)
    return root


def command(name: str, lake: Path, out: Path, *extra: str) -> list[str]:
    table = ["transactions"] if name == "export" else []
    return [name, *table, "--source", str(lake), "--out", str(out), *extra]


@pytest.mark.parametrize("name", ["export", "backfill"])
def test_an_end_past_the_lake_is_refused_at_once_in_little_memory(name, lake20, tmp_path):
    result, seconds = measured(*command(name, lake20, tmp_path / "out", "--start", str(CONSECUTIVE[0]),
                                        "--end", str(LAST_UINT32)), timeout=30)
    lines = result["stderr"].splitlines()
    assert result["rc"] == 2, result
    assert len(lines) == 1 and f"--end {LAST_UINT32} is beyond the newest ledger" in lines[0], lines
    assert str(CONSECUTIVE[-1]) in lines[0] and str(lake20) in lines[0] and "--wait-for-end" in lines[0]
    assert seconds < 10  # the bound: refused within 10 s ...
    assert result["max_rss_kb"] < 300 * 1024, result["max_rss_kb"]  # ... with peak memory under 300 MB
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize("name", ["export", "backfill"])
def test_a_sequence_beyond_32_bits_is_refused_in_one_line(name, lake20, tmp_path):
    result, seconds = measured(*command(name, lake20, tmp_path / "out", "--start", str(CONSECUTIVE[0]),
                                        "--end", "99999999999999999999"), timeout=30)
    assert result["rc"] == 2, result
    assert result["stderr"].splitlines() == [
        "obsrvr-ray: configuration error: --end: expected a ledger sequence from 1 to 4294967295 "
        "(a 32-bit number), got '99999999999999999999'"]
    assert seconds < 10


def test_every_command_refuses_the_same_bad_ledger_alike(lake20, tmp_path, capsys):
    said = {}
    for name in ("export", "backfill"):
        rc = main(command(name, lake20, tmp_path / name, "--start", "-5", "--end", "10"))
        captured = capsys.readouterr()
        assert rc == 2, captured
        said[name] = captured.err.splitlines()
    assert said["export"] == said["backfill"] == [
        "obsrvr-ray: configuration error: --start: expected a ledger sequence from 1 to 4294967295 "
        "(a 32-bit number), got '-5'"]
    assert not any(tmp_path.iterdir())
    rc = main(command("backfill", lake20, tmp_path / "b", "--ledgers", f"{CONSECUTIVE[0]}-{LAST_UINT32 + 1}"))
    assert rc == 2 and "ledger sequences are 1 to 4294967295" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["export", "backfill"])
def test_a_source_path_that_does_not_exist_is_said_once(name, tmp_path):
    missing = tmp_path / "no-such-lake"
    result, _ = measured(*command(name, missing, tmp_path / "out", "--start", str(CONSECUTIVE[0]),
                                  "--end", str(CONSECUTIVE[-1])), timeout=300)
    assert result["rc"] == 2, result
    assert result["stderr"].splitlines() == [
        f"obsrvr-ray: configuration error: data lake {missing}: no such directory"]
    assert result["stdout"] == ""


def test_an_unreachable_rpc_is_said_at_once_with_the_patience_left(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/"  # a real closed port: connections are refused
    proc = subprocess.Popen([sys.executable, "-m", "obsrvr_ray", "backfill", "--source", url, "--start", "100",
                             "--end", "200", "--out", str(tmp_path / "out"), "--source-patience", "60"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    began = time.monotonic()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if line.startswith("obsrvr-ray backfill: "):
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=30)
    seconds = time.monotonic() - began
    proc.kill()
    proc.wait(timeout=30)
    said = [line for line in lines if line.startswith("obsrvr-ray backfill: ")]
    assert said, lines[-5:]
    assert said[0].startswith(f"obsrvr-ray backfill: {url}: ")
    assert "RPC unreachable (connection refused)" in said[0]
    left = int(said[0].rsplit("retrying for ", 1)[1].removesuffix(" s more"))
    assert 40 <= left <= 60
    assert seconds < 20  # at once: not after the patience, not after Ray has started


def test_a_wait_for_end_export_waits_for_the_ledgers_still_to_come(real_ledgers, tmp_path, capsys):
    """--wait-for-end: the ledgers the lake holds are read at once, the others as they arrive."""
    lake = tmp_path / "lake"
    writer = LakeWriter(LocalStore(lake), LakeConfig(network_passphrase=PUBNET))
    writer.write_config()
    writer.write((s, real_ledgers[s]) for s in CONSECUTIVE[:-2])
    later = threading.Timer(1.0, lambda: writer.write((s, real_ledgers[s]) for s in CONSECUTIVE[-2:]))
    later.start()
    try:
        rc = main(command("export", lake, tmp_path / "tx.parquet", "--start", str(CONSECUTIVE[0]),
                          "--end", str(CONSECUTIVE[-1]), "--wait-for-end"))
    finally:
        later.join()
    out = capsys.readouterr().out
    assert rc == 0 and "20 ok, 0 failed" in out, out


def test_each_source_says_its_newest_ledger(real_ledgers, lake20, s3_endpoint):
    """Cheaply: a lake from the first names of two listings, whatever its size; an RPC node
    from getLatestLedger. A lake without ledgers has none."""
    assert open_source(str(lake20)).latest() == CONSECUTIVE[-1]
    options = SourceOptions(s3_endpoint_url=s3_endpoint, s3_region="us-east-1")
    for per_partition in (64000, 1):  # partitions, and batch objects at the root
        store = S3Store("newest", f"lake{per_partition}", S3Options(endpoint_url=s3_endpoint, region="us-east-1"))
        if per_partition == 64000:
            store.client.create_bucket(Bucket="newest")
        writer = LakeWriter(store, LakeConfig(network_passphrase=PUBNET, batches_per_partition=per_partition))
        writer.write_config()
        writer.write((s, real_ledgers[s]) for s in CONSECUTIVE[:5])
        assert open_source(f"s3://newest/lake{per_partition}", options).latest() == CONSECUTIVE[4]
    assert open_source("s3://newest/empty", options).latest() is None
    archive = LedgerArchive()
    archive.add_all(real_ledgers[s] for s in CONSECUTIVE[:3])
    with RpcServer(archive, PUBNET) as server:
        assert open_source(server.url).latest() == CONSECUTIVE[2]


def test_a_plan_holds_ranges_not_units_however_long_the_range():
    """The whole 32-bit history in chunks of 64: counted, not made (67 million units)."""
    units = plan(((1, LAST_UINT32),), {}, Grid.aligned(64, 1, 64000))
    assert units.ledgers == LAST_UINT32
    assert len(units) == 2**26  # cells of 64 (partitions of 64000 cut on the same lines): counted, not made
    first = next(iter(units))
    assert first.chunk == (1, 63) and not first.segments[0].link
    assert next(LakeConfig().batches(1, LAST_UINT32)) == (1, 1)  # batches too are made as they are read
