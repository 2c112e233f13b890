"""The live app on Ray Serve: three deployments.

  Follower   one replica: follows RPC, commits to the dataset, holds the newest ledgers
  Api        FastAPI ingress (REST, WebSocket, health, /metrics); scale its replicas freely
  Flight     one replica: an Arrow Flight server on its own port

Those are the deployment names config files and handles use; the classes carry the role suffix
(FollowerDeployment, ...), so the follower's loop (live.follow.LedgerFollower) and its service
(live.service.FollowerService) are not confused with them.

`build(args)` is the application builder `serve run` / `serve deploy` call with the `args`
of a config file (see obsrvr_ray/serve/config.example.yaml); `obsrvr-ray serve` calls it too.
"""

from __future__ import annotations

import asyncio
import threading

import pyarrow as pa
from ray import serve
from ray.serve.handle import DeploymentHandle

from obsrvr_ray.live.recent import AsyncWaiter, RecentLedgers
from obsrvr_ray.live.service import FollowerConfig, FollowerService
from obsrvr_ray.query import TableReader
from obsrvr_ray.serve.api import create_app
from obsrvr_ray.serve.serve_settings import LiveAppConfig, live_config_from_args

STATUS_TIMEOUT = 5.0
POLL_TIMEOUT = 10.0  # seconds an Api replica's long poll of the follower waits for a ledger
WINDOW_STALE = POLL_TIMEOUT + STATUS_TIMEOUT  # a copy not answered for longer is not REST's window


@serve.deployment(name="Follower", num_replicas=1, max_ongoing_requests=1000, ray_actor_options={"num_cpus": 1})
class FollowerDeployment:
    def __init__(self, config: FollowerConfig) -> None:
        self.service = FollowerService(config)
        self.service.start()
        self._waiter: AsyncWaiter | None = None

    def status(self) -> dict:
        return self.service.status()

    async def after(self, ledger: int, timeout: float) -> list[tuple[int, pa.Table]]:
        """Every subscriber long-polls here: waits on the replica's event loop, not in a thread."""
        if self._waiter is None:
            self._waiter = AsyncWaiter(self.service.recent)
        return await self._waiter.wait_after(ledger, timeout)

    def recent(self, after: int | None) -> pa.Table:
        return self.service.recent_table(after)

    def __del__(self) -> None:
        self.service.stop()


class HandleLive:
    """The API's view of the follower through a deployment handle; a follower that does not
    answer (restarting, overloaded) reads as None / empty, never as an error of the API.

    Subscribers' long polls and REST's recent ledgers are served from this replica's copy of the
    newest ledgers, which one task keeps filled with one long poll of the follower (started by
    the first subscriber or request): the follower sends each ledger once per Api replica, not
    once per subscriber or request. A subscriber behind that copy (it asked for older ledgers)
    asks the follower itself. The copy is REST's window only while the follower answers its
    long polls: a copy that stopped filling would hide newer ledgers."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle
        self.copy = RecentLedgers()
        self._waiter: AsyncWaiter | None = None
        self._poller: asyncio.Task | None = None
        self._answered: float | None = None  # the loop's time of the follower's last answer to the poll

    async def status(self) -> dict | None:
        try:
            return await asyncio.wait_for(self.handle.status.remote(), STATUS_TIMEOUT)
        except Exception:
            return None

    async def _follower_after(self, ledger: int, timeout: float) -> list[tuple[int, pa.Table]] | None:
        """The follower's answer; None (after a pause) when it does not answer."""
        try:
            return await asyncio.wait_for(self.handle.after.remote(ledger, timeout), timeout + STATUS_TIMEOUT)
        except Exception:
            await asyncio.sleep(1.0)
            return None

    async def _poll(self, ledger: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._follower_after(self.copy.latest or ledger, POLL_TIMEOUT)
            if batch is None:
                continue
            for sequence, rows in batch:
                self.copy.add(sequence, rows)
            self._answered = loop.time()

    def _ensure_polling(self, ledger: int) -> None:
        if self._poller is None or self._poller.done():
            self._waiter = self._waiter or AsyncWaiter(self.copy)
            self._poller = asyncio.create_task(self._poll(ledger))

    def window(self) -> RecentLedgers | None:
        """The copy, for REST, while the follower keeps answering its long poll (call on the loop)."""
        self._ensure_polling(0)
        fresh = self._answered is not None and asyncio.get_running_loop().time() - self._answered < WINDOW_STALE
        return self.copy if fresh else None

    async def after(self, ledger: int, timeout: float) -> list[tuple[int, pa.Table]]:
        self._ensure_polling(ledger)
        oldest = self.copy.oldest
        if oldest is None or ledger + 1 < oldest:
            return await self._follower_after(ledger, timeout) or []
        return await self._waiter.wait_after(ledger, timeout)

    async def recent(self, after: int | None) -> pa.Table:
        from obsrvr_ray.schema import TOKEN_TRANSFERS

        try:
            return await asyncio.wait_for(self.handle.recent.remote(after), STATUS_TIMEOUT)
        except Exception:
            return TOKEN_TRANSFERS.empty_table()


@serve.deployment(name="Api", max_ongoing_requests=2000, ray_actor_options={"num_cpus": 0})  # I/O bound: by replicas
@serve.ingress()
class ApiDeployment:
    def __init__(self, config: LiveAppConfig, follower: DeploymentHandle, flight: DeploymentHandle) -> None:
        self.config = config
        self.live = HandleLive(follower)
        self.flight = flight  # held so the Flight deployment is part of the application

    def __serve_build_asgi_app__(self):
        from obsrvr_ray.serve.http_security import build_guard
        from obsrvr_ray.serve.mtls import MtlsListener

        guard, routers, wrap = build_guard(self.config.security)
        app = wrap(create_app(TableReader(self.config.dataset, self.config.s3), self.live, guard, self.config.api,
                              extra_routers=routers, recent_window=self.live.window))
        if self.config.security.tls.policy("https") is not None:  # Serve's proxy cannot take client certificates
            self.mtls = MtlsListener(app, self.config.security, self.config.http_host, self.config.mtls_port).start()
        return app


@serve.deployment(name="Flight", num_replicas=1, ray_actor_options={"num_cpus": 0})
class FlightDeployment:
    def __init__(self, config: LiveAppConfig, follower: DeploymentHandle) -> None:
        from obsrvr_ray.serve.flight import TransfersFlightServer
        from obsrvr_ray.serve.flight_auth import flight_listener

        self.follower = follower
        location, options, self.relay = flight_listener(config.security, config.flight_host, config.flight_port)
        self.server = TransfersFlightServer(location, TableReader(config.dataset, config.s3), recent=self._recent,
                                            **options)
        if self.relay is not None:  # clients connect to the relay, which verifies their certificates
            self.relay.start(self.server.port)
            location = f"grpc+tls://{config.flight_host}:{self.relay.port}"
        self.location = location
        self._thread = threading.Thread(target=self.server.serve, name="flight", daemon=True)
        self._thread.start()

    def _recent(self) -> pa.Table:
        return self.follower.recent.remote(None).result(timeout_s=STATUS_TIMEOUT)

    def address(self) -> str:
        return self.location

    def __del__(self) -> None:
        if self.relay is not None:
            self.relay.stop()
        self.server.shutdown()


def compose(config: LiveAppConfig):
    """The application graph: the ingress holds handles to the follower and the Flight server."""
    follower = FollowerDeployment.bind(config.follower)
    return ApiDeployment.bind(config, follower, FlightDeployment.bind(config, follower))



def build(args: dict):
    """Application builder for `serve run obsrvr_ray.serve.deployments:build` and config files."""
    return compose(live_config_from_args(args))
