"""The live app's HTTP side: REST over the dataset (and the follower's newest ledgers), WebSocket
subscriptions, health and metrics. A plain FastAPI app: obsrvr_ray/serve/deployments.py puts it
behind Ray Serve; tests can also mount it anywhere.

Who may call what: every route names the permission it needs (obsrvr_ray/security/policy.py),
except the two Kubernetes probes. `/health/live` and `/health/ready` answer without credentials
(kubelets and load balancers hold none) and say only alive / ready and why, never the follower's
error texts. `/health` (the follower's full status, its last error, the bulkheads) and `/metrics`
need the `monitor` permission; `/metrics` is open only when the operator sets `public_metrics`
(a Prometheus on a private network that cannot hold a key). The OpenAPI docs stay open: they
describe the API, not its data. So does the web console at `/` (obsrvr_ray/serve/console/):
static files; what it shows it fetches from these routes with the key typed into it.

Slow WebSocket subscribers: each has a queue of `ws_queue` frames, and one that stays full for
`ws_send_timeout` seconds ends the subscription ("slow consumer", close code 1008). Behind Ray
Serve a replica's sends never wait (the proxy buffers what the client has not read), so the queue
fills only for a subscriber that asked for flow control: `window` in its subscribe message, and
`{"action": "ack", "ledger": N}` as it reads. A client that stops reading altogether is closed by
the Serve proxy's keepalive (uvicorn's WebSocket ping timeout).

A live ledger is encoded once per replica for all its subscribers (live.subscription.Frames;
the metric websocket_ledgers_encoded_total counts encodings). REST answers from the replica's
window of recent ledgers (`recent_window`: a RecentLedgers kept filled from the follower) for
every query whose first ledger it holds, and reads the dataset's files only for the rest; the
reader keeps file lists, statistics and decoded files between requests (obsrvr_ray/query.py).
A page made from memory is made on the event loop; reading a file, asking the store or the
follower happens in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Request, Response, WebSocket
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.websockets import WebSocketDisconnect, WebSocketState

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.live.live_metrics import ApiMetrics
from obsrvr_ray.live.recent import RecentLedgers
from obsrvr_ray.live.subscription import Frames, Subscription, arrow_frame, control, json_frame
from obsrvr_ray.query import MAX_PAGE, TableReader, TransferQuery
from obsrvr_ray.ranges import FIRST_LEDGER, LAST_LEDGER
from obsrvr_ray.serve.console import console_router
from obsrvr_ray.serve.http_security import websocket_subprotocol
from obsrvr_ray.serve.query_params import AnalyticsParams, PageParams, TransferParams, documented, route_params
from obsrvr_ray.settings_model import Settings
from obsrvr_ray.table.tableset import parse_as_of


class LiveView(Protocol):
    """What the API needs from the follower (an actor handle in Serve, a plain object in tests)."""

    async def status(self) -> dict | None:
        """The follower's status, None when it does not answer."""

    async def after(self, ledger: int, timeout: float) -> list[tuple[int, pa.Table]]:
        """Ledgers newer than `ledger` (waiting up to `timeout` for one)."""

    async def recent(self, after: int | None) -> pa.Table:
        """Token transfers of the newest ledgers (newer than `after`)."""


class RouteGuard(Protocol):
    """Authentication and authorisation (obsrvr_ray/serve/http_security.py provides the real one)."""

    def require(self, permission: str) -> Callable[..., Awaitable[object]]:
        """A FastAPI dependency admitting callers with `permission`."""

    public_metrics: bool  # /metrics answers without credentials
    auth_enabled: bool  # False in dev mode: the web console then asks for no key

    async def websocket(self, websocket: WebSocket, permission: str) -> object | None:
        """The caller of a WebSocket handshake, or None after rejecting it."""

    def client_ip(self, conn: Request | WebSocket) -> str:
        """The caller's address, as the rate limits see it (behind trusted proxies: X-Forwarded-For)."""


class ApiSettings(Settings):
    """The `api` mapping of the live app's settings."""

    ready_lag: int = 5  # ready while the follower is at most this many ledgers behind the network
    ready_timeout: float = 0.5  # seconds /health/ready waits for the follower's status (probes time out at 1 s)
    ws_max_connections: int = 1000
    ws_max_per_ip: int = 20
    ws_idle_timeout: float = 300.0  # seconds without a message from the client
    ws_queue: int = 64  # frames buffered per subscriber
    ws_send_timeout: float = 10.0  # seconds its buffer may stay full before it is dropped as too slow
    ws_subscribe_timeout: float = 30.0


def _jsonable(rows: list[dict]) -> list[dict]:
    for row in rows:
        for key, value in row.items():
            if isinstance(value, dt.datetime):
                row[key] = value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            elif isinstance(value, dt.date):
                row[key] = value.isoformat()
    return rows


def _timestamps_as_text(table: pa.Table) -> list[dict]:
    """`table`'s rows as JSON values: timestamps as _jsonable writes them, formatted by Arrow a
    column at a time (a third of the time of a datetime object per value), each distinct value once
    (a page's rows come from a few ledgers, and formatting in UTC costs about 1 us a value)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type):
            # _jsonable drops fractions too
            seconds = table.column(i).cast(pa.timestamp("s", "UTC"), safe=False).combine_chunks().dictionary_encode()
            text = pc.strftime(seconds.dictionary, "%Y-%m-%dT%H:%M:%SZ").take(seconds.indices)
            table = table.set_column(i, f.name, text)
    return table.to_pylist()


_TX_HASH_HEX = 64  # a transaction hash: 32 bytes in hex


class Subscribers:
    """Connection limits of this replica: in total and per client address."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.per_ip: Counter[str] = Counter()
        self.total = 0

    def admit(self, ip: str) -> str | None:
        """None when admitted, else why not."""
        if self.total >= self.settings.ws_max_connections:
            return "server connection limit reached"
        if self.per_ip[ip] >= self.settings.ws_max_per_ip:
            return "connection limit for this address reached"
        self.total += 1
        self.per_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.total -= 1
        self.per_ip[ip] -= 1
        if not self.per_ip[ip]:
            del self.per_ip[ip]


@dataclass(frozen=True)
class _AppParts:
    """What the routes of one app share: its data, its follower, its guard, settings and counters."""

    reader: TableReader
    live: LiveView
    guard: RouteGuard
    settings: ApiSettings
    metrics: ApiMetrics
    subscribers: Subscribers
    last_status: dict  # the follower's last status, read by the metrics
    frames: Frames  # live ledgers' frames, shared by the subscribers


Window = Callable[[], RecentLedgers | None]  # the replica's window of recent ledgers, None while not trusted


def create_app(reader: TableReader, live: LiveView, guard: RouteGuard, settings: ApiSettings | None = None,
               extra_routers: tuple[APIRouter, ...] = (), recent_window: Window | None = None) -> FastAPI:
    """`recent_window`: where REST finds the newest ledgers in memory (none: it reads the dataset,
    and asks `live` for the ledgers not committed yet)."""
    settings = settings or ApiSettings()
    last_status: dict = {}
    metrics = ApiMetrics(lambda: last_status.get("value"))
    parts = _AppParts(reader, live, guard, settings, metrics, Subscribers(settings), last_status,
                      Frames(lambda fmt: metrics.ws_encoded.labels(fmt).inc()))
    app = FastAPI(title="obsrvr-ray", version="0.1.0",
                  description="Stellar token transfers: history from the dataset, the newest ledgers from the live "
                              "follower. Auth: `Authorization: Bearer <JWT>` or `X-API-Key`.")
    for router in extra_routers:
        app.include_router(router)
    app.include_router(console_router(auth_required=guard.auth_enabled))  # the web console at /
    _count_requests(app, parts.metrics)
    _rest_routes(app, reader, live, guard, recent_window or (lambda: None))
    _health_routes(app, parts)
    _subscribe_route(app, parts)
    return app


def _count_requests(app: FastAPI, metrics: ApiMetrics) -> None:
    @app.middleware("http")
    async def count(request: Request, call_next):
        began = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.requests.labels(path, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - began)
        return response


def _recent_rows(live: LiveView, window: RecentLedgers | None) -> Callable[[int | None], pa.Table]:
    """Rows past the snapshot's last ledger, for a request running in a worker thread: from the
    window when it holds every ledger after that one, else from the follower."""
    loop = asyncio.get_running_loop()

    def rows(last: int | None) -> pa.Table:
        if window is not None and last is not None and window.holds_from(last + 1):
            return window.table(last)
        return asyncio.run_coroutine_threadsafe(live.recent(None), loop).result()

    return rows


def _rest_routes(app: FastAPI, reader: TableReader, live: LiveView, guard: RouteGuard, recent_window: Window) -> None:
    """The dataset's transfers, ledgers, transactions and analytics, with the follower's newest ledgers."""
    @app.get("/v1/token-transfers", dependencies=[Depends(guard.require("read"))], tags=["token transfers"],
             openapi_extra=documented(PageParams, TransferParams))
    async def token_transfers(request: Request) -> dict:
        """Token transfers matching every filter given, in ledger and event order, a page at a time;
        the latest committed snapshot plus the follower's newest ledgers, or a past snapshot."""
        query, own = route_params(request, PageParams)
        as_of = own.as_of
        try:
            if as_of is None:
                window = recent_window()
                held = window.select(query) if window is not None else None
                recent = None if held is not None else _recent_rows(live, window)
                # A page from memory (the window's rows, files decoded before) is made here, on the loop;
                # a worker thread (busy reading files for other requests, perhaps) only when files must
                # be read or the follower asked.
                page = reader.transfers(query, recent, held, read=False)
                if page is None:
                    page = await asyncio.to_thread(reader.transfers, query, recent, held)
            else:
                page = await asyncio.to_thread(reader.at(parse_as_of(as_of)).transfers, query, None)
        except ConfigError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        # Already JSON types: rendered by orjson, without FastAPI's generic encoder's walk of every value
        # (100 rows: 21 us against 331 us for JSONResponse's json.dumps).
        return Response(orjson.dumps({"rows": _timestamps_as_text(page.rows), "next_cursor": page.next_cursor}),
                        media_type="application/json")

    @app.get("/v1/ledgers/{sequence}", dependencies=[Depends(guard.require("read"))], tags=["lookups"])
    async def ledger(sequence: int = Path(ge=FIRST_LEDGER, le=LAST_LEDGER)) -> dict:
        row = await asyncio.to_thread(reader.ledger, sequence)
        if row is None:
            raise HTTPException(status_code=404, detail=f"ledger {sequence} is not in the dataset")
        return _jsonable([row])[0]

    @app.get("/v1/transactions/{tx_hash}", dependencies=[Depends(guard.require("read"))], tags=["lookups"])
    async def transaction(tx_hash: str) -> dict:
        if len(tx_hash) != _TX_HASH_HEX or any(c not in "0123456789abcdef" for c in tx_hash):
            raise HTTPException(status_code=422, detail="transaction hash must be 64 lowercase hex characters")
        row = await asyncio.to_thread(reader.transaction, tx_hash)
        if row is None:
            raise HTTPException(status_code=404, detail=f"transaction {tx_hash} is not in the dataset")
        return _jsonable([row])[0]

    @app.get("/v1/analytics", dependencies=[Depends(guard.require("read"))], tags=["analytics"],
             openapi_extra=documented(AnalyticsParams, TransferParams))
    async def analytics(request: Request) -> dict:
        """Volume and count per asset per hour and per day, counts per event type, largest transfers,
        over the window and filters given (exact volumes as text in volume_raw)."""
        query, own = route_params(request, AnalyticsParams)
        top = own.top
        recent = await live.recent(None)
        tables = await asyncio.to_thread(reader.aggregations, query, top, lambda: recent)
        return {name: _jsonable(table.to_pylist()) for name, table in tables.items()}


def _health_routes(app: FastAPI, parts: _AppParts) -> None:
    """Probes, the follower's status and the Prometheus metrics."""
    live, settings, guard = parts.live, parts.settings, parts.guard

    @app.get("/health/live", tags=["health"])
    async def health_live() -> dict:
        """Liveness probe: no credentials, no details."""
        return {"status": "alive"}

    async def readiness(timeout: float | None = None) -> tuple[bool, str, dict | None]:
        try:
            status = await asyncio.wait_for(live.status(), timeout)
        except TimeoutError:  # restarting, overloaded: a probe must not wait for it
            return False, f"follower not answering within {timeout} s", None
        parts.last_status["value"] = status
        if status is None:
            return False, "the live follower does not answer", None
        if status.get("chain_broken_at") is not None:  # the ledger number only: no error text in probes
            return False, f"chain broken at {status['chain_broken_at']}", status
        if status.get("state") in ("starting", "degraded", "stopped"):
            return False, f"the follower is {status['state']}", status
        lag = status.get("lag")
        if lag is None or lag > settings.ready_lag:
            return False, f"the follower is {lag} ledgers behind the network (ready at <= {settings.ready_lag})", status
        return True, "ok", status

    @app.get("/health/ready", tags=["health"])
    async def health_ready() -> JSONResponse:
        """Readiness probe (503 until the follower is within `ready_lag` ledgers of the network): no
        credentials, so no details; /health has them."""
        ready, reason, _ = await readiness(settings.ready_timeout)
        return JSONResponse({"ready": ready, "reason": reason}, status_code=200 if ready else 503)

    @app.get("/health", tags=["health"], dependencies=[Depends(guard.require("monitor"))])
    async def health() -> dict:
        """The follower's full status (its last error with credentials in the RPC URL masked)."""
        ready, reason, status = await readiness()
        error = (status or {}).get("last_error")
        if error:  # "chain broken at N: ..." already begins with its reason
            reason = error if error.startswith(reason) else f"{reason}: {error}"
        return {"alive": True, "ready": ready, "reason": reason, "follower": status,
                "dataset_last_ledger": await asyncio.to_thread(parts.reader.last_ledger),
                "websocket_connections": parts.subscribers.total}

    metrics_guard = [] if guard.public_metrics else [Depends(guard.require("monitor"))]

    @app.get("/metrics", tags=["health"], response_class=Response, dependencies=metrics_guard)
    async def prometheus() -> Response:
        """Prometheus text format (the `monitor` permission, unless the security setting public_metrics)."""
        parts.last_status["value"] = await live.status()
        return Response(generate_latest(parts.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _subscribe_route(app: FastAPI, parts: _AppParts) -> None:
    """The WebSocket feed, a connection limit per client address."""
    guard, subscribers, metrics = parts.guard, parts.subscribers, parts.metrics

    @app.websocket("/v1/subscribe")
    async def subscribe(websocket: WebSocket) -> None:
        """Token transfers of new ledgers, filtered, in order; optionally replayed from a ledger."""
        principal = await guard.websocket(websocket, "subscribe")
        if principal is None:
            return
        ip = guard.client_ip(websocket)
        refused = subscribers.admit(ip)
        if refused is not None:
            await websocket.accept(subprotocol=websocket_subprotocol(websocket))
            await websocket.close(code=1013, reason=refused)
            metrics.ws_dropped.labels("limit").inc()
            return
        metrics.ws_connections.inc()
        try:
            await Subscriber(websocket, parts.reader, parts.live, parts.settings, metrics, parts.frames).run()
        finally:
            subscribers.release(ip)
            metrics.ws_connections.dec()


class SlowConsumer(Exception):
    """The subscriber's queue stayed full for ws_send_timeout: it reads slower than ledgers arrive."""


class Subscriber:
    """One WebSocket connection: the subscription, its position and its outgoing queue."""

    def __init__(self, websocket: WebSocket, reader: TableReader, live: LiveView, settings: ApiSettings,
                 metrics: ApiMetrics, frames: Frames | None = None) -> None:
        self.ws = websocket
        self.frames = frames or Frames()
        self.reader = reader
        self.live = live
        self.settings = settings
        self.metrics = metrics
        self.subscription: Subscription | None = None
        self.last_sent: int | None = None  # the last ledger delivered (filtered or not)
        # (ledger, frame) for event frames, (None, frame) for control messages
        self.queue: asyncio.Queue[tuple[int | None, str | bytes]] = asyncio.Queue(maxsize=settings.ws_queue)
        self.unacked: deque[int] = deque()  # with a window: ledgers of event frames sent, not yet acknowledged
        self.acked = asyncio.Event()
        self.last_heard = time.monotonic()

    async def run(self) -> None:
        await self.ws.accept(subprotocol=websocket_subprotocol(self.ws))
        try:
            message = await self._receive(self.settings.ws_subscribe_timeout)
            if not isinstance(message, dict) or message.get("action") != "subscribe":
                raise ConfigError('the first message must be a JSON object {"action": "subscribe", ...}, '
                                  f"not {json.dumps(message)[:80]}")
            self.subscription = Subscription.parse(message)
        except TimeoutError:
            await self._close(1008, "no subscribe message in time", "idle")
            return
        except ConfigError as exc:
            await self.ws.send_text(control("error", message=str(exc)))
            await self._close(1008, f"bad subscription: {exc}", "bad_request")
            return
        except WebSocketDisconnect:
            return
        await self.ws.send_text(control("subscribed", subscription=self.subscription.describe()))
        tasks = [asyncio.create_task(t) for t in (self._produce(), self._write(), self._listen())]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            exc = task.exception()
            if isinstance(exc, SlowConsumer):
                await self._close(1008, "slow consumer: frames were not read fast enough", "slow_consumer")
            elif exc is not None and not isinstance(exc, WebSocketDisconnect):
                await self._close(1011, "internal error", "error")

    async def _close(self, code: int, reason: str, label: str) -> None:
        self.metrics.ws_dropped.labels(label).inc()
        if self.ws.client_state == WebSocketState.CONNECTED:
            try:
                await self.ws.send_text(control("closing", reason=reason))
                await self.ws.close(code=code, reason=reason[:120])
            except (RuntimeError, WebSocketDisconnect):
                pass

    async def _listen(self) -> None:
        """Any message keeps a connection alive (silence longer than the idle timeout ends it); pings
        are answered, acks open the window, anything else gets an error frame. Never blocks on the
        queue, so acks are always read."""
        while True:
            remaining = self.settings.ws_idle_timeout - (time.monotonic() - self.last_heard)
            if remaining <= 0:
                await self._close(1000, "idle timeout", "idle")
                return
            try:
                message = await self._receive(remaining)
            except TimeoutError:
                continue
            except ConfigError as exc:
                self.last_heard = time.monotonic()
                self._reply(control("error", message=str(exc)))
                continue
            self.last_heard = time.monotonic()
            action = message.get("action") if isinstance(message, dict) else None
            if action == "ping":
                self._reply(control("pong", ledger=self.last_sent))
            elif action == "ack" and isinstance(message.get("ledger"), int):
                while self.unacked and self.unacked[0] <= message["ledger"]:
                    self.unacked.popleft()
                self.acked.set()
            else:  # answered, and the subscription goes on
                self._reply(control("error", message='expected {"action": "ping"} or {"action": "ack", "ledger": N} '
                                    f"(already subscribed), not {json.dumps(message)[:80]}"))

    async def _receive(self, timeout: float) -> object:
        """The client's next message, parsed; ConfigError when it is not JSON text."""
        try:
            return await asyncio.wait_for(self.ws.receive_json(), timeout)
        except (ValueError, KeyError, TypeError) as exc:  # not JSON, or a binary frame
            raise ConfigError("messages must be JSON text frames") from exc

    def _reply(self, frame: str) -> None:
        # A full queue is a subscriber about to be dropped as slow: no answer is owed.
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait((None, frame))

    async def _write(self) -> None:
        window = self.subscription.window
        while True:
            ledger, frame = await self.queue.get()
            if ledger is not None and window is not None:
                while len(self.unacked) >= window:  # the client has not acknowledged enough yet
                    self.acked.clear()
                    await self.acked.wait()
                self.unacked.append(ledger)
            if isinstance(frame, bytes):
                await self.ws.send_bytes(frame)
            else:
                await self.ws.send_text(frame)

    async def _enqueue(self, ledger: int, rows: pa.Table, live: bool = False) -> None:
        """Queue the ledger's matching rows as one frame; SlowConsumer when the queue stays full.
        A `live` ledger's frame is the replica's shared one (Frames); a replayed one is this
        subscriber's own (its rows come from its own query)."""
        if live:
            frame, events = self.frames.frame(ledger, rows, self.subscription)
        else:
            rows = self.subscription.select(rows)
            events = rows.num_rows
            frame = (arrow_frame(ledger, rows) if self.subscription.format == "arrow" else json_frame(ledger, rows)) \
                if events else None
        if frame is not None:
            try:
                self.queue.put_nowait((ledger, frame))
            except asyncio.QueueFull:  # a burst (a replay, a follower catching up) or a slow reader
                try:
                    await asyncio.wait_for(self.queue.put((ledger, frame)), self.settings.ws_send_timeout)
                except TimeoutError as exc:
                    raise SlowConsumer() from exc
            self.metrics.ws_events.inc(events)
        self.last_sent = ledger

    async def _from_dataset(self, first: int, last: int) -> None:
        """Ledgers [first, last] read back from the dataset, one frame per ledger."""
        cursor = None
        sub = self.subscription
        while True:
            query = TransferQuery(start_ledger=first, end_ledger=last, filter=sub.filter, min_amount=sub.min_amount,
                                  cursor=cursor, limit=MAX_PAGE)
            page = await asyncio.to_thread(self.reader.transfers, query, None)
            rows = page.rows
            for ledger in pc.unique(rows["ledger_sequence"]).to_pylist() if rows.num_rows else []:
                await self._enqueue(ledger, rows.filter(pc.equal(rows["ledger_sequence"], ledger)))
                await asyncio.sleep(0)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        self.last_sent = last

    async def _produce(self) -> None:
        status = await self.live.status() or {}
        live_from = (status.get("next_ledger") or 1) - 1
        if self.subscription.from_ledger is not None:
            committed = await asyncio.to_thread(self.reader.last_ledger)
            if committed is not None and self.subscription.from_ledger <= committed:
                await self._from_dataset(self.subscription.from_ledger, committed)
            else:
                self.last_sent = self.subscription.from_ledger - 1
        else:
            self.last_sent = live_from
        while True:
            batch = await self.live.after(self.last_sent, 10.0)
            for ledger, rows in batch:
                if ledger <= self.last_sent:
                    continue
                if ledger > self.last_sent + 1:  # the follower restarted: what it published before is in the dataset
                    await self._from_dataset(self.last_sent + 1, ledger - 1)
                await self._enqueue(ledger, rows, live=True)
