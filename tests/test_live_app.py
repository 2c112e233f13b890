"""The live app end to end on a real Ray Serve deployment (on the session's `ray start` cluster),
over HTTPS with a generated certificate, API keys on: a getLedgers server on loopback feeds it
ledgers the test closes one by one.

Shown here: WebSocket subscribers get exactly their filtered events in order with no gap across
a follower restart; REST and Flight give the backfill's rows for the same range; every route,
the WebSocket and Flight refuse missing, wrong, revoked or under-privileged keys; rate limits
answer 429; RPC faults leave the app up and not ready until it catches up; an OpenAPI fuzz run
finds no 5xx.
"""

from __future__ import annotations

import json
import os
import ssl
import time

import pyarrow as pa
import pyarrow.flight as flight
import pytest
import requests
from websockets.sync.client import connect as ws_connect

from obsrvr_ray.ledger.decode import decode_ledger
from obsrvr_ray.network import SANDBOX
from obsrvr_ray.objectstore import LocalStore
from obsrvr_ray.sandbox import generate_ledgers
from obsrvr_ray.sandbox.rpc_server import LedgerArchive, RpcServer
from obsrvr_ray.security.keystore import KeyStore
from obsrvr_ray.security.tls import generate_self_signed
from obsrvr_ray.sinks.lake import LakeWriter
from obsrvr_ray.sources.lake_layout import LakeConfig
from obsrvr_ray.ttp.extract import token_transfer_rows
from tests.backfill_helpers import read_transfers, run_backfill, wait_for
from tests.conftest import free_port

LEDGERS = 60  # sandbox ledgers 2..61
SERVED_AT_START = 11  # the node has 2..11 when the app starts
APP = "obsrvr-live-test"


class Live:
    """Everything a test needs to talk to the running app."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def get(self, path: str, key: str | None = "reader", **params) -> requests.Response:
        headers = {"X-API-Key": self.keys[key]} if key else {}
        return requests.get(f"{self.base}{path}", params=params, headers=headers, verify=str(self.tls.ca_cert),
                            timeout=30)

    def close_ledgers(self, upto: int, pause: float = 0.0) -> None:
        """The node closes ledgers up to `upto` (those it does not have yet)."""
        latest = self.archive.window()[1]
        for seq in range(latest + 1, upto + 1):
            self.archive.add(self.ledgers[seq])
            if pause:
                time.sleep(pause)

    def status(self) -> dict:
        return self.get("/health").json()["follower"] or {}

    def ready_status(self, timeout: float = 120) -> dict:
        """The follower's status once the app is ready (a restarted follower takes a few seconds)."""
        wait_for(lambda: _ready(self), timeout=timeout, what="the app to be ready", interval=0.5)
        return self.status()

    def wait_committed(self, seq: int, timeout: float = 120) -> None:
        wait_for(lambda: (self.status().get("committed_through") or 0) >= seq, timeout=timeout,
                 what=f"ledger {seq} committed", interval=0.5)

    def flight_client(self) -> flight.FlightClient:
        return flight.FlightClient(self.flight_url, tls_root_certs=self.tls.ca_cert.read_bytes())

    def flight_options(self, key: str | None = "reader") -> flight.FlightCallOptions:
        headers = [(b"x-api-key", self.keys[key].encode())] if key else []
        return flight.FlightCallOptions(headers=headers)


@pytest.fixture(scope="module")
def ledgers() -> dict[int, bytes]:
    return dict(generate_ledgers(LEDGERS))


@pytest.fixture(scope="module")
def expected(ledgers) -> dict[int, list[dict]]:
    return {seq: token_transfer_rows(decode_ledger(data, SANDBOX, decoder="reference"), SANDBOX)[0]
            for seq, data in ledgers.items()}


@pytest.fixture(scope="module")
def live(ray_head, ledgers, tmp_path_factory):
    import ray
    from ray import serve
    from ray.serve.config import HTTPOptions

    from obsrvr_ray.serve.deployments import compose
    from obsrvr_ray.serve.settings import live_config_from_args

    work = tmp_path_factory.mktemp("live")
    lake = work / "lake"
    writer = LakeWriter(LocalStore(lake), LakeConfig(network_passphrase=SANDBOX))
    writer.write_config()
    writer.write(ledgers.items())
    tls = generate_self_signed(work / "tls")
    store = KeyStore(work / "keys.json")
    keys = {role: store.create(role, name=f"test {role}")[1] for role in ("reader", "admin", "processor")}
    keys["fuzzer"] = store.create("admin", name="openapi fuzz")[1]  # a bucket of its own
    keys["revoked"] = store.create("reader")[1]
    store.revoke(keys["revoked"].split("_")[1])
    keys["wrong"] = keys["reader"][:-4] + "AAAA"

    archive = LedgerArchive()
    archive.add_all(ledgers[s] for s in range(2, SERVED_AT_START + 1))
    rpc_port = free_port()
    rpc = RpcServer(archive, SANDBOX, port=rpc_port).start()

    os.environ.update(ray_head.env)
    ray.init(address=ray_head.address, namespace="obsrvr-live-test", logging_level="ERROR")
    http_port, flight_port = free_port(), free_port()
    config = live_config_from_args({
        "rpc_url": rpc.url, "dataset": str(work / "out"), "start": 2, "lake": str(lake), "commit_every": 4,
        "flight_port": flight_port,
        "security": {"key_store": str(store.path), "tls_cert": str(tls.cert), "tls_key": str(tls.key),
                     "rate_per_key": 5, "burst_per_key": 10},
        "api": {"ws_idle_timeout": 60},
    })
    serve.start(http_options=HTTPOptions(host="127.0.0.1", port=http_port, ssl_certfile=str(tls.cert),
                                         ssl_keyfile=str(tls.key)))
    serve.run(compose(config), name=APP, route_prefix="/", blocking=False)
    app = Live(base=f"https://127.0.0.1:{http_port}", ws=f"wss://127.0.0.1:{http_port}/v1/subscribe",
               flight_url=f"grpc+tls://127.0.0.1:{flight_port}", tls=tls, keys=keys, store=store, archive=archive,
               rpc=rpc, rpc_port=rpc_port, ledgers=ledgers, lake=lake, out=work / "out", work=work)
    try:
        wait_for(lambda: _ready(app), timeout=180, what="the app to be ready", interval=1.0)
        yield app
    finally:
        serve.delete(APP)
        serve.shutdown()
        ray.shutdown()
        app.rpc.stop()


def _ready(app: Live) -> bool:
    try:
        return app.get("/health/ready").status_code == 200
    except requests.RequestException:
        return False


def _ssl_context(app: Live) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(app.tls.ca_cert))


def _rest_rows(app: Live, **params) -> list[dict]:
    rows, cursor = [], None
    while True:
        page = app.get("/v1/token-transfers", limit=200, cursor=cursor, **params)
        assert page.status_code == 200, page.text
        body = page.json()
        rows += body["rows"]
        cursor = body["next_cursor"]
        if cursor is None:
            return rows


def _as_json(table: pa.Table) -> list[dict]:
    out = table.to_pylist()
    for row in out:
        row["closed_at"] = row["closed_at"].strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


def test_rest_and_flight_return_the_backfills_rows(live, ray_head):
    live.close_ledgers(23)  # commit cells of 4 ledgers: 20-23 is the last complete one
    live.wait_committed(23)
    out = live.work / "backfill"
    proc = run_backfill(ray_head, "--source", str(live.lake), "--start", "2", "--end", "23", "--out", str(out),
                        "--tables", "token_transfers", "--batch-size", "10")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    backfill = read_transfers(out)
    rest = _rest_rows(live, start_ledger=2, end_ledger=23)
    assert rest == _as_json(backfill)
    ticket = flight.Ticket(json.dumps({"table": "token_transfers", "start_ledger": 2, "end_ledger": 23}).encode())
    got = live.flight_client().do_get(ticket, options=live.flight_options()).read_all()
    assert got.equals(backfill, check_metadata=False)
    names = {i.descriptor.path[0] for i in live.flight_client().list_flights(options=live.flight_options())}
    assert names == {b"ledgers", b"transactions", b"token_transfers"}


def _kill_follower() -> str:
    import ray
    from ray.util.state import list_actors

    replicas = [a for a in list_actors(filters=[("state", "=", "ALIVE")])
                if a.class_name == f"ServeReplica:{APP}:Follower"]
    assert len(replicas) == 1
    ray.kill(ray.get_actor(replicas[0].name, namespace="serve"), no_restart=False)
    return replicas[0].actor_id


def test_websocket_filtered_events_in_order_without_gap_across_a_follower_restart(live, expected):
    start = live.ready_status()["next_ledger"] - 1
    last = start + 14
    account = next(r["from"] for s in range(start + 1, last + 1) for r in expected[s] if r["event_topic"] == "transfer")
    want = [(r["ledger_sequence"], r["event_index"]) for s in range(start + 1, last + 1) for r in expected[s]
            if r["event_topic"] in ("transfer", "mint") and account in (r["from"], r["to"])]
    assert want
    got: list[tuple[int, int]] = []
    seen_ledgers: list[int] = []
    with ws_connect(live.ws, ssl=_ssl_context(live), additional_headers={"X-API-Key": live.keys["reader"]}) as ws:
        ws.send(json.dumps({"action": "subscribe", "event_types": ["transfer", "mint"], "accounts": [account]}))
        assert json.loads(ws.recv(timeout=30))["type"] == "subscribed"
        live.close_ledgers(start + 6, pause=0.3)
        killed = _kill_follower()
        live.close_ledgers(last, pause=0.3)
        deadline = time.monotonic() + 120
        while (not seen_ledgers or seen_ledgers[-1] < max(s for s, _ in want)) and time.monotonic() < deadline:
            frame = json.loads(ws.recv(timeout=60))
            if frame["type"] != "events":
                continue
            seen_ledgers.append(frame["ledger"])
            for event in frame["events"]:
                assert event["from"] == account or event["to"] == account
                assert event["event_topic"] in ("transfer", "mint")
                got.append((event["ledger_sequence"], event["event_index"]))
    assert killed
    assert seen_ledgers == sorted(set(seen_ledgers))  # in order, each ledger once
    assert got == want


def test_arrow_frames_replay_from_a_ledger_then_continue_live(live, expected):
    committed = live.ready_status()["committed_through"]
    first = committed - 5
    with ws_connect(live.ws, ssl=_ssl_context(live), additional_headers={"X-API-Key": live.keys["reader"]}) as ws:
        ws.send(json.dumps({"action": "subscribe", "format": "arrow", "from_ledger": first}))
        assert json.loads(ws.recv(timeout=30))["type"] == "subscribed"
        live.close_ledgers(committed + 3)
        frames = {}
        while max(frames, default=0) < committed + 3:
            data = ws.recv(timeout=60)
            assert isinstance(data, bytes)
            table = pa.ipc.open_stream(data).read_all()
            frames[int(table.schema.metadata[b"ledger"])] = table
    assert sorted(frames) == [s for s in range(first, committed + 4) if expected[s]]
    for seq, table in frames.items():
        assert table.num_rows == len(expected[seq])


def test_every_route_the_websocket_and_flight_refuse_bad_credentials(live):
    routes = ["/v1/token-transfers", "/v1/ledgers/3", "/v1/analytics", "/admin/keys"]
    for route in routes:
        for key in (None, "wrong", "revoked"):
            assert live.get(route, key=key).status_code == 401, (route, key)
    assert live.get("/v1/token-transfers", key="processor").status_code == 403
    assert live.get("/admin/keys", key="reader").status_code == 403
    assert live.get("/admin/keys", key="admin").status_code == 200
    assert live.get("/v1/ledgers/3").status_code == 200
    for key in (None, "wrong", "revoked", "processor"):
        headers = {"X-API-Key": live.keys[key]} if key else {}
        with pytest.raises(Exception) as refused, \
                ws_connect(live.ws, ssl=_ssl_context(live), additional_headers=headers) as ws:  # 401/403 handshake
            ws.send(json.dumps({"action": "subscribe"}))
            ws.recv(timeout=10)
        assert "40" in str(refused.value) or "1008" in str(refused.value), key
    ticket = flight.Ticket(json.dumps({"table": "ledgers"}).encode())
    for key, error in ((None, flight.FlightUnauthenticatedError), ("wrong", flight.FlightUnauthenticatedError),
                       ("revoked", flight.FlightUnauthenticatedError), ("processor", flight.FlightUnauthorizedError)):
        with pytest.raises(error):
            live.flight_client().do_get(ticket, options=live.flight_options(key)).read_all()
    with pytest.raises(requests.exceptions.RequestException):  # plain HTTP on the TLS port
        requests.get(live.base.replace("https", "http") + "/health/live", timeout=5)


def test_rate_limit_answers_429(live):
    """5 requests/s and a burst of 10 per key (set low for this app): 40 quick requests exceed it."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: live.get("/v1/ledgers/2", key="admin"), range(40)))
    codes = [r.status_code for r in responses]
    assert set(codes) == {200, 429}
    limited = next(r for r in responses if r.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    time.sleep(3)  # let the bucket refill for the tests that follow


def test_rpc_faults_leave_the_app_up_not_ready_then_it_catches_up(live, expected):
    live.ready_status()
    live.rpc.stop()  # the node goes away
    wait_for(lambda: live.get("/health/ready").status_code == 503, timeout=60, what="not ready", interval=0.5)
    assert live.get("/health/live").status_code == 200
    assert live.get("/v1/token-transfers", limit=5).status_code == 200  # history is still served
    nxt = live.status()["next_ledger"]
    upto = (nxt + 6) // 4 * 4 + 3  # the end of a commit cell (cells of 4)
    server = RpcServer(live.archive, SANDBOX, port=live.rpc_port)  # back, with errors and a gap
    server.faults.http_failures_left = 3
    server.faults.skip = {nxt + 1, nxt + 2}
    live.rpc = server.start()
    live.close_ledgers(upto)
    wait_for(lambda: _ready(live) and live.status()["committed_through"] >= upto, timeout=180,
             what="the follower to catch up", interval=0.5)
    rows = _rest_rows(live, start_ledger=2, end_ledger=upto)
    want = [r for s in range(2, upto + 1) for r in expected[s]]
    assert [(r["ledger_sequence"], r["event_index"], r["amount_raw"]) for r in rows] == [
        (r["ledger_sequence"], r["event_index"], r["amount_raw"]) for r in want]
    status = live.status()
    assert status["lake_fallbacks"] >= 2 and status["gaps_filled"] >= 2 and status["failures"] == 0
    live.rpc.faults.skip = set()


def test_health_and_metrics(live):
    live.ready_status()
    health = live.get("/health").json()
    assert health["alive"] and health["follower"]["state"] in ("live", "catching_up")
    metrics = live.get("/metrics").text
    for name in ("current_ledger", "ledgers_processed_total", "export_errors_total", "circuit_breaker_state",
                 "websocket_connections", "http_requests_total", "follower_lag_ledgers"):
        assert f"\n{name}" in metrics or metrics.startswith(name), name


def test_openapi_fuzz_finds_no_server_errors(live):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    key = {"X-API-Key": live.keys["fuzzer"]}
    schema = schemathesis.openapi.from_url(f"{live.base}/openapi.json", verify=str(live.tls.ca_cert), headers=key)
    failures = []

    def fuzz_operation(op) -> None:
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(case=op.as_strategy())
        def fuzz(case) -> None:
            time.sleep(0.2)  # stay under the rate limit: a 429 is not what is being tested
            response = case.call(verify=str(live.tls.ca_cert), headers=key)
            if response.status_code >= 500:
                failures.append((op.method, op.path, response.status_code, response.text[:200]))

        fuzz()

    tried = []
    for operation in schema.get_all_operations():
        op = operation.ok()
        if op.path.startswith("/admin/keys"):
            continue  # creating, rotating and revoking keys at random would revoke the test's own keys
        tried.append(op.path)
        fuzz_operation(op)
    assert "/v1/token-transfers" in tried and "/v1/analytics" in tried
    assert failures == []
