"""The live path's timing and sharing, against a real getLedgers server, a real dataset on disk
and the app's own FastAPI behind uvicorn (no Ray: the follower's service runs in this process,
as the Follower deployment runs it):

- the follower asks for the next ledger when it is due (the last close time plus the interval
  its headers show), not on a fixed poll: the server's request log shows when it asked;
- WebSocket subscribers get the follower's rows, encoded once per ledger however many
  subscribers there are, and their frames are what REST reads for the same ledger;
- REST answers recent ranges from the window of recent ledgers without the dataset's files, and
  reads an older range's files once, not per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect as ws_connect

from obsrvr_ray.chunks.process import ChunkSettings
from obsrvr_ray.live.recent import AsyncWaiter
from obsrvr_ray.live.service import FollowerConfig, FollowerService
from obsrvr_ray.network import SANDBOX
from obsrvr_ray.pipeline import ExtractOptions
from obsrvr_ray.query import TableReader
from obsrvr_ray.rpc_server import LedgerArchive, RpcServer
from obsrvr_ray.security.security_settings import SecuritySettings
from obsrvr_ray.serve.api import create_app
from obsrvr_ray.serve.http_security import build_guard
from obsrvr_ray.sinks.layout import OutputSpec
from obsrvr_ray.table.location import TableLocation, filesystem_type, is_network_filesystem
from obsrvr_sandbox.generator import SandboxNetwork
from tests.test_security_support import Server

LEDGERS = 18  # sandbox ledgers 2..19; the node has 2..15 when the app starts, commit cells of 4
AT_START = 15


def service(url: str, dataset, **config) -> FollowerService:
    settings = ChunkSettings(tables=("ledgers", "token_transfers"), output=OutputSpec(str(dataset)),
                             extract=ExtractOptions(SANDBOX))
    return FollowerService(FollowerConfig(rpc_url=url, settings=settings, start=2, commit_every=4, **config))


# ---- when the follower asks -------------------------------------------------------------------
def test_the_follower_asks_for_the_next_ledger_when_it_is_due_not_on_a_fixed_poll(tmp_path):
    """Ledgers close one a second (whole-second close times, as Stellar's); the node has each one
    0.2 s before its close time, so a follower asking early would get it early. With a 30 s poll
    interval the follower still reads every ledger within the run, asking at the due time."""
    network, archive = SandboxNetwork(), LedgerArchive()
    first_live = int(time.time()) + 2  # the close time of the first ledger closed while following
    closes = {}
    for close_time in range(first_live - 4, first_live):  # history, a second apart
        seq, meta = network.next_ledger(close_time=close_time)
        archive.add(meta)
        closes[seq] = close_time
    live = [(seq + 1 + i, first_live + i) for i in range(4)]
    server = RpcServer(archive, SANDBOX).start()
    svc = service(server.url, tmp_path / "out", poll_interval=30.0)

    def feed() -> None:
        for seq, close_time in live:
            time.sleep(max(0.0, close_time - 0.2 - time.time()))
            archive.add(network.next_ledger(close_time=close_time)[1])
            closes[seq] = close_time

    feeder = threading.Thread(target=feed, daemon=True)
    follower = threading.Thread(target=svc.follower.run, daemon=True)
    try:
        feeder.start()
        follower.start()
        feeder.join(timeout=30)
        deadline = time.monotonic() + 10
        while svc.recent.latest != live[-1][0] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        svc.follower.stop()
        follower.join(timeout=30)
        server.stop()
    assert svc.recent.latest == live[-1][0], "every ledger closed while following was read"
    asked: dict[int, list[float]] = {}
    for at, method, params in server.seen:
        if method == "getLedgers":
            asked.setdefault(params["startLedger"], []).append(at)
    for seq, _ in live[1:]:  # the first one's due time came while the app was starting
        due = closes[seq - 1] + 1  # the last close time plus the interval the headers show
        assert min(asked[seq]) >= due - 0.05, f"ledger {seq} asked for before it was due"
        assert len(asked[seq]) <= 3, f"ledger {seq}: {len(asked[seq])} requests"


# ---- the app over a follower in this process -------------------------------------------------------
class InProcessLive:
    """What the Follower deployment answers through its handle, from a FollowerService here."""

    def __init__(self, svc: FollowerService) -> None:
        self.svc = svc
        self._waiter: AsyncWaiter | None = None

    async def status(self) -> dict | None:
        return self.svc.status()

    async def after(self, ledger: int, timeout: float) -> list[tuple[int, pa.Table]]:
        self._waiter = self._waiter or AsyncWaiter(self.svc.recent)
        return await self._waiter.wait_after(ledger, timeout)

    async def recent(self, after: int | None) -> pa.Table:
        return self.svc.recent_table(after)


class App:
    def __init__(self, **kw) -> None:
        self.__dict__.update(kw)

    def get(self, path: str, **params) -> requests.Response:
        with requests.Session() as session:
            session.trust_env = False
            return session.get(f"{self.server.url}{path}", params=params, timeout=30)

    def rows(self, **params) -> list[dict]:
        answer = self.get("/v1/token-transfers", limit=1000, **params)
        assert answer.status_code == 200, answer.text
        return answer.json()["rows"]

    def close(self, upto: int) -> None:
        """The node closes ledgers up to `upto`; the follower reads and publishes them."""
        for seq in range(self.archive.window()[1] + 1, upto + 1):
            self.archive.add(self.ledgers[seq])
        while self.svc.follower.status.next_ledger <= upto:
            self.svc.follower.step()


@pytest.fixture
def app(ledgers, tmp_path):
    archive = LedgerArchive()
    archive.add_all(ledgers[s] for s in range(2, AT_START + 1))
    rpc = RpcServer(archive, SANDBOX).start()
    svc = service(rpc.url, tmp_path / "out", recent_ledgers=6)  # the window: the newest 6 ledgers
    while svc.follower.status.next_ledger <= AT_START:
        svc.follower.step()
    assert svc.follower.status.committed_through == AT_START
    reader = TableReader(str(tmp_path / "out"))
    guard, routers, secure = build_guard(SecuritySettings(dev_mode=True, bind_hosts=("127.0.0.1",)))
    api = create_app(reader, InProcessLive(svc), guard, extra_routers=routers, recent_window=lambda: svc.recent)
    try:
        with Server(secure(api)) as server:
            yield App(server=server, api=api, svc=svc, archive=archive, ledgers=ledgers, reader=reader,
                      out=tmp_path / "out")
    finally:
        rpc.stop()


def _metric(app: App, name: str, **labels: str) -> float:
    text = app.get("/metrics").text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def _events(frame: str | bytes) -> list[dict]:
    if isinstance(frame, bytes):
        rows = pa.ipc.open_stream(frame).read_all().to_pylist()
        for row in rows:
            row["closed_at"] = row["closed_at"].strftime("%Y-%m-%dT%H:%M:%SZ")
        return rows
    return json.loads(frame)["events"]


def test_subscribers_share_one_encoding_per_ledger_and_get_what_rest_reads(app, expected):
    account = expected[AT_START + 1][0]["from"]
    subscriptions = [{}, {}, {}, {"accounts": [account]}, {"format": "arrow"}]
    new = range(AT_START + 1, LEDGERS + 2)
    with contextlib.ExitStack() as stack:
        sockets = []
        for extra in subscriptions:
            ws = stack.enter_context(ws_connect(f"{app.server.ws_url}/v1/subscribe", proxy=None, open_timeout=30))
            ws.send(json.dumps({"action": "subscribe", "from_ledger": AT_START + 1, **extra}))
            assert json.loads(ws.recv(30))["type"] == "subscribed"
            sockets.append(ws)
        json_before = _metric(app, "websocket_ledgers_encoded_total", format="json")
        app.close(LEDGERS + 1)
        received = []
        for ws, extra in zip(sockets, subscriptions, strict=True):
            frames = {}
            wanted = [s for s in new if extra.get("accounts") is None
                      or any(account in (r["from"], r["to"]) for r in expected[s])]
            while sorted(frames) != wanted:
                frame = ws.recv(30)
                ledger = (pa.ipc.open_stream(frame).schema.metadata[b"ledger"] if isinstance(frame, bytes)
                          else json.loads(frame)["ledger"])
                frames[int(ledger)] = frame
            received.append(frames)
    for seq in new:
        rest = app.rows(start_ledger=seq, end_ledger=seq)
        assert [{k: r[k] for k in want if k != "closed_at"} for r, want in zip(rest, expected[seq], strict=True)] \
            == [{k: v for k, v in want.items() if k != "closed_at"} for want in expected[seq]]
        for frames in received[:3] + received[4:]:  # every event, JSON or Arrow: REST's rows
            assert _events(frames[seq]) == rest
        assert received[0][seq] == received[1][seq] == received[2][seq]
        if seq in received[3]:
            assert _events(received[3][seq]) == app.rows(start_ledger=seq, end_ledger=seq, account=account)
    # JSON encoded once per ledger for the four JSON subscribers; Arrow once per ledger.
    assert _metric(app, "websocket_ledgers_encoded_total", format="json") - json_before == len(new)
    assert _metric(app, "websocket_ledgers_encoded_total", format="arrow") == len(new)


def test_rest_reads_recent_ranges_from_memory_and_older_files_once(app, expected):
    older = app.rows(start_ledger=2, end_ledger=5)  # before the window (it holds the newest 6): files
    read = app.reader.files_read
    assert read >= 1
    assert app.rows(start_ledger=2, end_ledger=5) == older
    assert app.reader.files_read == read, "an older range's files are read once, not per request"
    recent = app.rows(start_ledger=AT_START - 4, end_ledger=AT_START)
    assert app.reader.files_read == read, "a recent range is read from memory"
    for path in app.out.rglob("*.parquet"):  # the dataset's files gone: the window still answers
        path.unlink()
    assert app.rows(start_ledger=AT_START - 4, end_ledger=AT_START) == recent
    tail = app.rows(start_ledger=AT_START - 4)  # up to the newest ledger, past the window's end too
    assert tail == recent
    assert [r["ledger_sequence"] for r in recent] == [s for s in range(AT_START - 4, AT_START + 1)
                                                      for _ in expected[s]]


def test_pages_from_memory_are_answered_while_every_worker_thread_is_busy(app):
    """Reading files takes one of the app's worker threads (a slow store can hold them all); a page
    of the newest ledgers, settled by the window, and a page of older ledgers whose files were
    decoded before (the table on local disk) are made without one."""
    pages = {"recent": {"start_ledger": AT_START - 4, "end_ledger": AT_START},
             "older": {"start_ledger": 2, "end_ledger": 5}}
    before = {name: app.rows(**params) for name, params in pages.items()}
    release = threading.Event()

    async def occupy() -> dict:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(1, thread_name_prefix="occupied"))
        loop.run_in_executor(None, release.wait)
        return {}

    app.api.add_api_route("/occupy", occupy)
    try:
        assert app.get("/occupy").status_code == 200
        with requests.Session() as session:
            session.trust_env = False
            for name, params in pages.items():
                answer = session.get(f"{app.server.url}/v1/token-transfers", params={**params, "limit": 1000},
                                     timeout=10)
                assert answer.status_code == 200 and answer.json()["rows"] == before[name], name
    finally:
        release.set()


MOUNTS = """\
/dev/root / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw,nosuid,nodev 0 0
fileserver:/export/lake /data/lake nfs4 rw,relatime,vers=4.2 0 0
s3fs /data/s3\\040mount fuse.s3fs rw,nosuid,nodev 0 0
/dev/nvme1n1 /data/lake/local ext4 rw,relatime 0 0
"""


@pytest.mark.parametrize(("path", "kind", "network"), [
    ("/srv/out", "ext4", False), ("/tmp/out", "tmpfs", False), ("/data/lake/out", "nfs4", True),
    ("/data/lake", "nfs4", True), ("/data/lakeside", "ext4", False), ("/data/s3 mount/out", "fuse.s3fs", True),
    ("/data/lake/local/out", "ext4", False)])
def test_the_mount_a_table_is_on_decides_whether_pages_wait_for_a_thread(path, kind, network):
    """A stat on a network mount (NFS, FUSE...) can hang, so pages of tables there are never made
    on the event loop: the longest mount point holding the path says which filesystem it is."""
    assert filesystem_type(path, MOUNTS) == kind
    assert is_network_filesystem(kind) == network


def test_a_local_directory_is_on_local_disk_and_s3_is_not(tmp_path):
    assert TableLocation(str(tmp_path)).on_local_disk()
    assert not TableLocation("s3://bucket/out").on_local_disk()
