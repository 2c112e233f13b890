"""Shared fixtures: the real pubnet ledgers read in place, lakes built from them, and real
servers on loopback (moto's S3 server, the getLedgers server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from obsrvr_ray.network import PUBNET
from obsrvr_ray.objectstore import LocalStore
from obsrvr_ray.sinks.lake import LakeWriter, import_files, read_ledger_file
from obsrvr_ray.sources.lake_layout import LakeConfig

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OBSRVR_SHARED_DATA", REPO.parent / "shared" / "data"))
LEDGERS_DIR = SHARED / "ledgers"
GOLDEN_DIR = SHARED / "golden" / "stellar-etl" / "ledger_30820015"
CONSECUTIVE = range(63092982, 63093002)  # the 20 consecutive protocol-26 ledgers


def real_ledger_files() -> list[Path]:
    files = sorted(p for p in LEDGERS_DIR.glob("*/*") if p.is_file() and p.suffix != ".md")
    if not files:
        pytest.skip(f"real ledgers not found under {LEDGERS_DIR} (set OBSRVR_SHARED_DATA)")
    return files


@pytest.fixture(scope="session")
def real_ledgers() -> dict[int, bytes]:
    """Every real pubnet ledger by sequence, as LedgerCloseMeta bytes (read in place)."""
    out: dict[int, bytes] = {}
    for path in real_ledger_files():
        out.update(read_ledger_file(path))
    return out


@pytest.fixture(scope="session")
def real_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A galexie-layout lake holding every real ledger (built with the project's importer)."""
    root = tmp_path_factory.mktemp("real-lake")
    import_files(real_ledger_files(), LakeWriter(LocalStore(root), LakeConfig(network_passphrase=PUBNET)))
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """moto's S3-compatible server as a separate process on loopback; boto3 talks HTTP to it."""
    port = free_port()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(autouse=True, scope="session")
def _aws_test_credentials() -> None:
    """boto3 signs requests to moto with these dummy keys; nothing reaches AWS."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def decoded(real_ledgers):
    """Decode a real ledger once per session (the reference decoder takes ~0.5 s a ledger)."""
    from obsrvr_ray.ledger.decode import decode_ledger

    cache = {}

    def get(seq: int):
        if seq not in cache:
            cache[seq] = decode_ledger(real_ledgers[seq], PUBNET, sequence=seq)
        return cache[seq]

    return get


def readme_facts() -> dict[int, dict[str, str]]:
    """The per-ledger facts table of the real ledgers' README, by ledger sequence."""
    text = (LEDGERS_DIR / "README.md").read_text()
    section = text.split("## Per-ledger facts", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    facts = {}
    for line in rows[2:]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        facts[int(cells["ledger"])] = cells
    return facts
