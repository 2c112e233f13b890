"""The sandbox is a package of its own (`obsrvr_sandbox`) beside the runtime: the runtime never
imports it, and its console script `obsrvr-sandbox feed` serves a growing chain of generated
ledgers over real getLedgers that the runtime's RPC source reads, in the foreground or as a
detached actor of a Ray cluster (the demo's live feed)."""

from __future__ import annotations

import ast
import re
import signal
import subprocess
import sys
import time

from obsrvr_ray.network import SANDBOX
from obsrvr_ray.sources.rpc import RpcSource
from tests.conftest import REPO


def test_the_runtime_never_imports_the_sandbox():
    found = []
    for path in sorted((REPO / "obsrvr_ray").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.relative_to(REPO)}: {name}" for name in names
                      if name.split(".")[0] == "obsrvr_sandbox" or name.startswith("obsrvr_ray.sandbox")]
    assert found == []
    assert not (REPO / "obsrvr_ray" / "sandbox").exists()


def wait_for_ledgers(url: str, count: int, timeout: float = 30) -> RpcSource:
    """The RPC source on the feed, once its chain holds `count` ledgers from 2."""
    source = RpcSource(url, poll_interval=0.1)
    deadline = time.monotonic() + timeout
    while (source.latest() or 0) < count + 1:
        assert time.monotonic() < deadline, f"the feed at {url} stayed at ledger {source.latest()}"
        time.sleep(0.1)
    return source


def test_feed_serves_a_growing_sandbox_chain_until_stopped():
    proc = subprocess.Popen([sys.executable, "-m", "obsrvr_sandbox", "feed", "--port", "0", "--interval", "0.2",
                             "--history", "2"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        found = re.match(r"sandbox getLedgers feed at (http://127\.0\.0\.1:\d+/): a new ledger every 0.2s", line)
        assert found, line + proc.stderr.read()
        url = found.group(1)
        source = wait_for_ledgers(url, 5)
        assert source.network_passphrase == SANDBOX
        records = list(source.records(2, 6))
        assert [r.sequence for r in records] == [2, 3, 4, 5, 6] and all(r.ok for r in records), records
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, proc.stderr.read()


def test_detached_feed_lives_in_the_cluster_after_the_command_returns(ray_head):
    env = dict(ray_head.env, RAY_ADDRESS=ray_head.address)
    args = [sys.executable, "-m", "obsrvr_sandbox", "feed", "--detach", "--port", "0", "--interval", "0.2"]
    first = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    try:
        assert first.returncode == 0, first.stderr
        url = first.stdout.strip()  # the URL alone, for `obsrvr-ray serve --rpc "$(...)"`
        assert url.startswith("http://127.0.0.1:"), first.stdout
        source = wait_for_ledgers(url, 4)
        assert all(r.ok for r in source.records(2, 5)) and source.network_passphrase == SANDBOX
        again = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert again.stdout.strip() == url  # one feed per cluster: a second demo follows the same chain
    finally:
        subprocess.run([sys.executable, "-c", "import ray; ray.init(); "
                        "ray.kill(ray.get_actor('obsrvr-sandbox-feed', namespace='obsrvr'))"],
                       env=env, timeout=120, check=False)

