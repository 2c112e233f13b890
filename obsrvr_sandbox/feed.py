"""A getLedgers server that closes a new sandbox ledger every few seconds: the live app's
feed for demos and tests, offline. It can start with a few ledgers closed (served as history)
and continue with fresh ones."""

from __future__ import annotations

import threading
import time

from obsrvr_ray.network import SANDBOX
from obsrvr_ray.rpc_server import LedgerArchive, RpcServer
from obsrvr_sandbox.generator import SandboxNetwork


class SandboxFeed:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, interval: float = 5.0, history: int = 0,
                 seed: int = 1, txs_per_ledger: int = 12, retention: int | None = None) -> None:
        self.network = SandboxNetwork(seed=seed, txs_per_ledger=txs_per_ledger)
        self.archive = LedgerArchive(retention=retention)
        for _ in range(history):
            self.archive.add(self.network.next_ledger()[1])
        self.server = RpcServer(self.archive, SANDBOX, host=host, port=port)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-feed", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    def close_ledger(self) -> int:
        return self.archive.add(self.network.next_ledger(close_time=int(time.time()))[1])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.close_ledger()

    def start(self) -> SandboxFeed:
        self.server.start()
        if self.interval > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.stop()
