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

from obsrvr_ray.network import PUBNET, SANDBOX, resolve_passphrase
from obsrvr_ray.objectstore import LocalStore
from obsrvr_ray.sinks.lake_writer import LakeWriter, import_files, read_ledger_file
from obsrvr_ray.sources.lake_layout import LakeConfig

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OBSRVR_SHARED_DATA", REPO.parent / "shared" / "data"))
LEDGERS_DIR = SHARED / "ledgers"
GOLDEN_DIR = SHARED / "golden" / "stellar-etl" / "ledger_30820015"
CONSECUTIVE = range(63092982, 63093002)  # the 20 consecutive protocol-26 ledgers


TESTNET_DIR = "stellar-go-testnet"  # 320 consecutive protocol-19 testnet ledgers (their own network)


def real_ledger_files() -> list[Path]:
    """The real pubnet ledgers (every folder but the testnet one)."""
    files = sorted(p for p in LEDGERS_DIR.glob("*/*")
                   if p.is_file() and p.suffix != ".md" and p.parent.name != TESTNET_DIR)
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


def testnet_ledger_files() -> list[Path]:
    files = sorted(p for p in (LEDGERS_DIR / TESTNET_DIR).glob("*.xdr"))
    if not files:
        pytest.skip(f"real testnet ledgers not found under {LEDGERS_DIR / TESTNET_DIR} (set OBSRVR_SHARED_DATA)")
    return files


@pytest.fixture(scope="session")
def testnet_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A galexie-layout lake of the 320 consecutive real testnet ledgers (protocol 19)."""
    root = tmp_path_factory.mktemp("testnet-lake")
    testnet = resolve_passphrase("testnet")
    import_files(testnet_ledger_files(), LakeWriter(LocalStore(root), LakeConfig(network_passphrase=testnet)))
    return root


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


# --- a real Ray cluster for the backfill tests -------------------------------------------------


class RayHead:
    """A `ray start --head --block` cluster on loopback: GCS `address` for drivers, `dashboard`
    URL for `ray job submit`, and the environment both need (token auth off)."""

    def __init__(self, proc: subprocess.Popen, address: str, dashboard: str, env: dict[str, str], temp_dir: str):
        self.proc, self.address, self.dashboard, self.env, self.temp_dir = proc, address, dashboard, env, temp_dir

    @property
    def pid(self) -> int:
        return self.proc.pid


@pytest.fixture(scope="session")
def ray_head() -> RayHead:
    """One Ray cluster for the whole session (starting one costs ~5 s and ~600 MB): 2 CPUs, the
    dashboard on (job submission), usage stats off, every port free-chosen, its own temp dir
    (so `ray.init()` elsewhere does not find it), RAY_AUTH_MODE=disabled (Ray 2.60 turns token
    auth on when a token exists; cluster/README.md shows the token set-up). Stopped at the end
    by SIGTERM to the blocking `ray start`, then SIGKILL to its process group if anything is left."""
    import contextlib
    import shutil
    import signal
    import tempfile
    import urllib.request

    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    ports = {name: free_port() for name in ("gcs", "dashboard", "client", "agent", "agent_grpc", "metrics", "runtime")}
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    ray_cli = str(Path(sys.executable).with_name("ray"))
    log = Path(temp_dir) / "ray-start.log"
    proc = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(ports["gcs"]),
         "--num-cpus", "2", "--object-store-memory", str(400 * 2**20), "--disable-usage-stats",
         "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(ports["dashboard"]),
         "--ray-client-server-port", str(ports["client"]), "--dashboard-agent-listen-port", str(ports["agent"]),
         "--dashboard-agent-grpc-port", str(ports["agent_grpc"]), "--metrics-export-port", str(ports["metrics"]),
         "--runtime-env-agent-port", str(ports["runtime"]), "--temp-dir", temp_dir],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    dashboard = f"http://127.0.0.1:{ports['dashboard']}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited {proc.returncode}: {log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{dashboard}/api/version", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield RayHead(proc, f"127.0.0.1:{ports['gcs']}", dashboard, env, temp_dir)
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=40)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the cluster's processes share the group `ray start` leads
        proc.wait(timeout=10)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def ledgers(request: pytest.FixtureRequest) -> dict[int, bytes]:
    """The test module's `LEDGERS` generated sandbox ledgers (2, 3, ...) by sequence: a live feed."""
    from obsrvr_sandbox import generate_ledgers

    return dict(generate_ledgers(request.module.LEDGERS))


@pytest.fixture(scope="module")
def expected(ledgers: dict[int, bytes]) -> dict[int, list[dict]]:
    """Each of those ledgers' token transfers by the rules on stellar-sdk's objects: what the live
    app must publish and serve."""
    from tests.helpers import reference_rows

    return reference_rows(ledgers, SANDBOX)
