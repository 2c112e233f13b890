"""The live app end to end on a real Ray Serve deployment (on the session's `ray start` cluster),
over HTTPS with a generated certificate, API keys and JWTs on: a getLedgers server on loopback
feeds it ledgers the test closes one by one. The RPC URL carries credentials (user info, path,
query), as hosted RPC providers' URLs do, so the tests can look for them where they must not be.

Shown here: WebSocket subscribers get exactly their filtered events (accounts, types, minimum
amount) in order with no gap across a follower restart; a subscriber that stops acknowledging is
dropped as a slow consumer, with the reason; per-address and global connection limits and the
idle timeout close connections with their reasons; REST and Flight give the backfill's rows for
the same range; every route of the OpenAPI document, the WebSocket and Flight refuse missing,
wrong, revoked and under-privileged API keys and expired, forged and under-privileged JWTs; rate
limits answer 429; RPC faults leave the app up and not ready until it catches up, and no health
answer leaks the RPC credentials; an OpenAPI fuzz run finds no 5xx.

The app's WebSocket limits are small here (2 connections per address, 3 in all, a 4 s idle
timeout, 4 queued frames, 1 s before a full queue drops the subscriber), so the clients ping.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import time
import uuid

import pyarrow as pa
import pytest
import requests
from pyarrow import flight
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from obsrvr_ray.network import SANDBOX
from obsrvr_ray.objectstore import LocalStore
from obsrvr_ray.rpc_server import LedgerArchive, RpcServer
from obsrvr_ray.security.keystore import KeyStore
from obsrvr_ray.security.policy import ROLES
from obsrvr_ray.security.tls import generate_pki
from obsrvr_ray.sinks.lake_writer import LakeWriter
from obsrvr_ray.sources.lake_layout import LakeConfig
from tests.backfill_helpers import read_transfers, run_backfill, wait_for
from tests.conftest import free_port
from tests.test_security_support import AUDIENCE, HS_SECRET, ISSUER, token

LEDGERS = 64  # sandbox ledgers 2..65
SERVED_AT_START = 11  # the node has 2..11 when the app starts
APP = "obsrvr-live-test"
IDLE_TIMEOUT = 4.0  # the app's WebSocket idle timeout here
PING_EVERY = 1.0
RPC_SECRETS = ("rpc-user", "rpc-pass", "rpc-path-key", "rpc-query-key")  # in the RPC URL the app follows


class Live:
    """Everything a test needs to talk to the running app."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def get(self, path: str, key: str | None = "reader", **params) -> requests.Response:
        headers = {"X-API-Key": self.keys[key]} if key else {}
        return requests.get(f"{self.base}{path}", params=params, headers=headers, verify=str(self.tls.ca_cert),
                            timeout=30)

    def subscribe(self, message: dict | None = None, headers: dict | None = None, source: str = "127.0.0.1",
                  ping: bool = True) -> Subscriber:
        """A subscriber from `source` (any 127.x address), its subscription acknowledged (if `message`)."""
        ws = ws_connect(self.ws, ssl=_ssl_context(self), proxy=None, open_timeout=30,
                        additional_headers={"X-API-Key": self.keys["subscriber"]} if headers is None else headers,
                        source_address=(source, 0))
        sub = Subscriber(ws, ping)
        if message is not None:
            sub.send({"action": "subscribe", **message})
            assert json.loads(sub.recv(30))["type"] == "subscribed"
        return sub

    def close_ledgers(self, upto: int, pause: float = 0.0) -> None:
        """The node closes ledgers up to `upto` (those it does not have yet)."""
        latest = self.archive.window()[1]
        for seq in range(latest + 1, upto + 1):
            self.archive.add(self.ledgers[seq])
            if pause:
                time.sleep(pause)

    def status(self) -> dict:
        return self.get("/health", key="monitor").json()["follower"] or {}

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


class Subscriber:
    """A WebSocket client that skips pongs and (with `ping`) pings from a thread of its own, often
    enough for the app's short idle timeout whatever the test does meanwhile."""

    def __init__(self, ws: ClientConnection, ping: bool = True) -> None:
        self.ws = ws
        self.stop = threading.Event()
        if ping:
            threading.Thread(target=self._ping, daemon=True).start()

    def _ping(self) -> None:
        while not self.stop.wait(PING_EVERY):
            try:
                self.send({"action": "ping"})
            except ConnectionClosed:
                return

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.ws.close()

    def send(self, message: dict) -> None:
        self.ws.send(json.dumps(message))

    def recv(self, timeout: float = 60) -> str | bytes:
        """The next frame that is not a pong."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            data = self.ws.recv(timeout=left)
            if isinstance(data, bytes) or json.loads(data)["type"] != "pong":
                return data
        raise TimeoutError(f"no frame in {timeout} s")

    def events(self, until_ledger: int, timeout: float = 60) -> list[dict]:
        """The JSON event frames up to the one of `until_ledger` (control messages skipped)."""
        frames = []
        while not frames or frames[-1]["ledger"] < until_ledger:
            frame = json.loads(self.recv(timeout))
            if frame["type"] == "events":
                frames.append(frame)
        return frames


@pytest.fixture(scope="module")
def live(ray_head, ledgers, tmp_path_factory):
    import ray
    from ray import serve
    from ray.serve.config import HTTPOptions

    from obsrvr_ray.serve.deployments import compose
    from obsrvr_ray.serve.serve_settings import live_config_from_args

    work = tmp_path_factory.mktemp("live")
    lake = work / "lake"
    writer = LakeWriter(LocalStore(lake), LakeConfig(network_passphrase=SANDBOX))
    writer.write_config()
    writer.write(ledgers.items())
    pki = generate_pki(work / "tls")  # the server's certificate, and client certificates for mutual TLS
    tls = pki.server
    store = KeyStore(work / "keys.json")
    keys = {role: store.create(role, name=f"test {role}")[1] for role in ("reader", "admin", "processor")}
    keys["fuzzer"] = store.create("admin", name="openapi fuzz")[1]  # a bucket of its own
    keys["revoked"] = store.create("reader")[1]
    store.revoke(keys["revoked"].split("_")[1])
    keys["wrong"] = keys["reader"][:-4] + "AAAA"
    keys["subscriber"] = store.create("reader", name="test subscribers")[1]  # WebSocket handshakes
    keys["monitor"] = store.create("processor", name="test health polls")[1]  # /health polls
    # Keys of their own (rate-limit buckets of their own) for the credential matrix.
    role_keys = {role: store.create(role, name=f"matrix {role}")[1] for role in ROLES}
    jwt_secret = work / "jwt-secret"
    jwt_secret.write_text(HS_SECRET)

    archive = LedgerArchive()
    archive.add_all(ledgers[s] for s in range(2, SERVED_AT_START + 1))
    rpc_port = free_port()
    rpc = RpcServer(archive, SANDBOX, port=rpc_port).start()
    user, password, path_key, query_key = RPC_SECRETS
    rpc_url = rpc.url.replace("http://", f"http://{user}:{password}@") + f"{path_key}?apikey={query_key}"

    os.environ.update(ray_head.env)
    ray.init(address=ray_head.address, namespace="obsrvr-live-test", logging_level="ERROR")
    http_port, flight_port, mtls_port = free_port(), free_port(), free_port()
    config = live_config_from_args({
        "rpc_url": rpc_url, "dataset": str(work / "out"), "start": 2, "lake": str(lake), "commit_every": 4,
        "flight_port": flight_port, "mtls_port": mtls_port,
        "security": {"key_store": str(store.path), "tls_cert": str(tls.cert), "tls_key": str(tls.key),
                     "tls": {"client_ca": str(tls.ca_cert), "client_cert": "optional", "crl": str(pki.crl),
                             "identities": {pki.clients[r].identity: [r] for r in ("reader", "processor")}},
                     "rate_per_key": 5, "burst_per_key": 10,
                     "jwt": {"secret_file": str(jwt_secret), "issuer": ISSUER, "audience": AUDIENCE}},
        "api": {"ws_idle_timeout": IDLE_TIMEOUT, "ws_max_per_ip": 2, "ws_max_connections": 3, "ws_queue": 4,
                "ws_send_timeout": 1.0},
    })
    serve.start(http_options=HTTPOptions(host="127.0.0.1", port=http_port, ssl_certfile=str(tls.cert),
                                         ssl_keyfile=str(tls.key)))
    serve.run(compose(config), name=APP, route_prefix="/", blocking=False)
    app = Live(base=f"https://127.0.0.1:{http_port}", ws=f"wss://127.0.0.1:{http_port}/v1/subscribe",
               flight_url=f"grpc+tls://127.0.0.1:{flight_port}", mtls=f"https://127.0.0.1:{mtls_port}", pki=pki,
               tls=tls, keys=keys, role_keys=role_keys,
               store=store, archive=archive,
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

    address = ray.get_runtime_context().gcs_address  # this session's cluster, whatever else runs here
    replicas = [a for a in list_actors(address=address, filters=[("state", "=", "ALIVE")])
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
    with live.subscribe({"event_types": ["transfer", "mint"], "accounts": [account]}) as sub:
        live.close_ledgers(start + 6, pause=0.3)
        killed = _kill_follower()
        live.close_ledgers(last, pause=0.3)
        frames = sub.events(until_ledger=max(s for s, _ in want), timeout=120)
    seen_ledgers = [frame["ledger"] for frame in frames]
    for event in (e for frame in frames for e in frame["events"]):
        assert event["from"] == account or event["to"] == account
        assert event["event_topic"] in ("transfer", "mint")
        got.append((event["ledger_sequence"], event["event_index"]))
    assert killed
    assert seen_ledgers == sorted(set(seen_ledgers))  # in order, each ledger once
    assert got == want


def test_arrow_frames_replay_from_a_ledger_then_continue_live(live, expected):
    committed = live.ready_status()["committed_through"]
    first = committed - 5
    with live.subscribe({"format": "arrow", "from_ledger": first}) as sub:
        live.close_ledgers(committed + 3)
        frames = {}
        while max(frames, default=0) < committed + 3:
            data = sub.recv(60)
            assert isinstance(data, bytes)
            table = pa.ipc.open_stream(data).read_all()
            frames[int(table.schema.metadata[b"ledger"])] = table
    assert sorted(frames) == [s for s in range(first, committed + 4) if expected[s]]
    for seq, table in frames.items():
        assert table.num_rows == len(expected[seq])


def test_websocket_min_amount_filter_on_replayed_and_live_ledgers(live, expected):
    committed = live.ready_status()["committed_through"]
    first = committed - 7
    amounts = sorted(int(r["amount_raw"]) for s in range(first, committed + 1) for r in expected[s])
    least = amounts[len(amounts) * 3 // 4]  # the largest quarter passes
    upto = next(s for s in range(committed + 1, LEDGERS + 2) if any(int(r["amount_raw"]) >= least for r in expected[s]))
    want = [(r["ledger_sequence"], r["event_index"]) for s in range(first, upto + 1) for r in expected[s]
            if int(r["amount_raw"]) >= least]
    with live.subscribe({"from_ledger": first, "min_amount": str(least)}) as sub:
        live.close_ledgers(upto)  # live ledgers: the last one has a large enough transfer
        frames = sub.events(until_ledger=upto)
    events = [e for frame in frames for e in frame["events"]]
    assert all(int(e["amount_raw"]) >= least for e in events)
    assert [(e["ledger_sequence"], e["event_index"]) for e in events] == want
    assert 0 < len(want) < sum(len(expected[s]) for s in range(first, upto + 1))  # the filter dropped some


def test_websocket_flow_control_and_a_slow_consumer_dropped_with_its_reason(live):
    """Behind Ray Serve a replica's sends never wait, so a subscriber that wants to be held to its
    reading speed asks for a window and acknowledges; one that stops acknowledging fills its queue
    (4 frames here) and is dropped after 1 s, with the reason, while others are unaffected."""
    committed = live.ready_status()["committed_through"]
    first = committed - 9  # every sandbox ledger has events: 10 frames, more than window + queue
    with live.subscribe({"from_ledger": first, "window": 1}) as reader:  # acknowledges each frame
        got = []
        while not got or got[-1] < committed:
            frame = json.loads(reader.recv(30))
            if frame["type"] == "events":
                got.append(frame["ledger"])
                reader.send({"action": "ack", "ledger": frame["ledger"]})
    assert got == list(range(first, committed + 1))
    frames = []
    with live.subscribe({"from_ledger": first, "window": 1}) as stalled, \
            pytest.raises(ConnectionClosed) as closed:  # never acknowledges
        while True:
            frames.append(json.loads(stalled.recv(30)))
    assert [(f["type"], f.get("ledger")) for f in frames] == [("events", first), ("closing", None)]
    assert frames[1]["reason"] == "slow consumer: frames were not read fast enough"
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, frames[1]["reason"])
    assert 'websocket_dropped_total{reason="slow_consumer"} 1.0' in live.get("/metrics").text


def _connections(live: Live) -> int:
    return live.get("/health", key="monitor").json()["websocket_connections"]


def test_websocket_connection_limits_per_address_and_in_all(live):
    """This app admits 2 connections per address and 3 in all; the one beyond is accepted and
    closed at once with 1013 (try again later) and which limit it hit."""
    wait_for(lambda: _connections(live) == 0, timeout=30, what="earlier connections released", interval=0.2)

    def refused(source: str) -> tuple[int, str]:
        with live.subscribe(source=source) as sub, pytest.raises(ConnectionClosed) as closed:
            sub.recv(10)
        return closed.value.rcvd.code, closed.value.rcvd.reason

    with live.subscribe(source="127.0.0.1"), live.subscribe(source="127.0.0.1"):
        assert refused("127.0.0.1") == (1013, "connection limit for this address reached")
        with live.subscribe({}, source="127.0.0.2"):
            assert _connections(live) == 3
            assert refused("127.0.0.3") == (1013, "server connection limit reached")
    wait_for(lambda: _connections(live) == 0, timeout=30, what="connections released", interval=0.2)
    with live.subscribe({}, source="127.0.0.1"):  # released: the address is admitted again
        assert _connections(live) == 1
    assert 'websocket_dropped_total{reason="limit"} 2.0' in live.get("/metrics").text


def test_websocket_idle_timeout_closes_a_silent_subscriber_not_a_pinging_one(live):
    with live.subscribe({}, source="127.0.0.4", ping=False) as silent, \
            live.subscribe({}, source="127.0.0.5") as pinging:
        time.sleep(IDLE_TIMEOUT - 1)
        assert silent.ws.state is State.OPEN  # not closed before its time
        time.sleep(3)  # the pinging one pings meanwhile
        messages = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                messages.append(json.loads(silent.ws.recv(timeout=5)))
        assert messages[-1] == {"type": "closing", "reason": "idle timeout"}
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1000, "idle timeout")
        assert pinging.ws.state is State.OPEN


# ---- credentials: every route of the OpenAPI document, the WebSocket and Flight -------------------
PUBLIC = {("get", "/health/live"), ("get", "/health/ready")}  # Kubernetes probes: no credentials, no details
OTHER_SECRET = "another-issuers-secret-0123456789abcdefghij"


def _operations(live: Live) -> list[tuple[str, str, str, list[str] | None, bool]]:
    """Every operation the running app documents: method, path, a URL with sample path values,
    the roles its security requirement names (None: public) and whether it takes a JSON body."""
    doc = requests.get(f"{live.base}/openapi.json", verify=str(live.tls.ca_cert), timeout=30).json()
    samples = {"integer": "3", "string": "0" * 64}  # a ledger; a transaction hash or key id nobody has
    out = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            values = {p["name"]: samples[p["schema"]["type"]] for p in op.get("parameters", []) if p["in"] == "path"}
            roles = None
            if op.get("security"):
                (named,) = {tuple(scopes) for requirement in op["security"] for scopes in requirement.values()}
                roles = list(named)
            out.append((method, path, path.format(**values), roles, "requestBody" in op))
    return out


def _jwt(roles: list[str], **claims) -> str:
    """A JWT of this app's issuer for a subject of its own (so its own rate-limit bucket)."""
    return token(roles=roles, sub=f"matrix-{uuid.uuid4().hex[:12]}", **claims)


def _key(secret: str) -> dict[str, str]:
    return {"X-API-Key": secret}


def _bearer(jwt: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}"}


def _unauthenticated(live: Live) -> dict[str, object]:
    """Credentials that must get 401, whatever the route: each a function making fresh headers."""
    return {"no credentials": dict,
            "a wrong key": lambda: _key(live.keys["wrong"]),
            "a revoked key": lambda: _key(live.keys["revoked"]),
            "an expired admin JWT": lambda: _bearer(_jwt(["admin"], exp=-120)),  # beyond the 30 s leeway
            "an admin JWT signed with another secret": lambda: _bearer(_jwt(["admin"], key=OTHER_SECRET))}


def _by_role(live: Live) -> dict[str, tuple[set[str], object]]:
    """Valid credentials and the roles they carry: each role as a key and as a JWT, and JWTs with none."""
    out: dict[str, tuple[set[str], object]] = {}
    for role in ROLES:
        out[f"a {role} key"] = ({role}, lambda r=role: _key(live.role_keys[r]))
        out[f"a {role} JWT"] = ({role}, lambda r=role: _bearer(_jwt([r])))
    out["a JWT without roles"] = (set(), lambda: _bearer(_jwt([])))
    out["a JWT with a role this app does not know"] = (set(), lambda: _bearer(_jwt(["superuser"])))
    return out


def _call(session: requests.Session, live: Live, method: str, url: str, headers: dict, body: bool):
    """One request; a 429 (the address's or credential's bucket) is waited out: not what is tested."""
    for _ in range(10):
        response = session.request(method, f"{live.base}{url}", headers=headers, json={} if body else None,
                                   verify=str(live.tls.ca_cert), timeout=30)
        if response.status_code != 429:
            return response
        time.sleep(float(response.headers["Retry-After"]))
    raise AssertionError(f"{method} {url} stayed rate-limited")


def test_every_route_refuses_missing_wrong_revoked_and_under_privileged_keys_and_tokens(live):
    """Walks the running app's own OpenAPI document, so a route added later is covered (or fails
    here if it has no guard). A caller with a granting role gets past the guard: a sample id nobody
    has answers 404, an empty body 422; nothing is created, rotated or revoked."""
    operations = _operations(live)
    assert {(m, p) for m, p, _, roles, _ in operations if roles is None} == PUBLIC
    roles_of = {(m, p): roles for m, p, _, roles, _ in operations}
    assert roles_of["get", "/v1/token-transfers"] == ["admin", "reader"]
    assert roles_of["get", "/v1/transactions/{tx_hash}"] == ["admin", "reader"]
    assert roles_of["post", "/admin/keys/{key_id}/rotate"] == roles_of["post", "/admin/keys"] == ["admin"]
    assert roles_of["get", "/metrics"] == roles_of["get", "/health"] == ["admin", "reader", "processor"]
    unauthenticated, by_role = _unauthenticated(live), _by_role(live)
    with requests.Session() as session:
        for method, path, url, roles, body in operations:
            if roles is None:
                assert _call(session, live, method, url, {}, body).status_code in (200, 503), path
                continue
            for what, headers in unauthenticated.items():
                response = _call(session, live, method, url, headers(), body)
                assert response.status_code == 401, (method, path, what, response.text)
                assert response.headers["WWW-Authenticate"].startswith('Bearer realm="obsrvr-ray"')
            for what, (granted, headers) in by_role.items():
                response = _call(session, live, method, url, headers(), body)
                if granted & set(roles):
                    assert response.status_code not in (401, 403), (method, path, what, response.text)
                else:
                    assert response.status_code == 403, (method, path, what, response.text)
                    assert "needs role" in response.json()["detail"]


def _refusals(live: Live) -> dict[str, tuple[object, int]]:
    """What the WebSocket and Flight must refuse, and the HTTP status of the refusal."""
    return {**{what: (headers, 401) for what, headers in _unauthenticated(live).items()},
            "a processor key": (lambda: _key(live.role_keys["processor"]), 403),
            "a processor JWT": (lambda: _bearer(_jwt(["processor"])), 403),
            "a JWT without roles": (lambda: _bearer(_jwt([])), 403)}


def test_the_websocket_and_flight_refuse_the_same_credentials(live):
    for what, (headers, status) in _refusals(live).items():
        with pytest.raises(InvalidStatus) as refused:
            live.subscribe(headers=headers())
        assert refused.value.response.status_code == status, what
    # Browsers cannot set headers on a WebSocket: the JWT goes in a subprotocol, the server echoes `bearer`.
    with ws_connect(live.ws, ssl=_ssl_context(live), proxy=None, open_timeout=30,
                    subprotocols=["bearer", f"bearer.{_jwt(['reader'])}"]) as ws:
        assert ws.subprotocol == "bearer"
        ws.send(json.dumps({"action": "subscribe"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "subscribed"

    ticket = flight.Ticket(json.dumps({"table": "ledgers", "start_ledger": 2, "end_ledger": 3}).encode())
    client = live.flight_client()
    for headers, status in _refusals(live).values():
        error = flight.FlightUnauthenticatedError if status == 401 else flight.FlightUnauthorizedError
        with pytest.raises(error):
            client.do_get(ticket, options=_flight_options(headers())).read_all()
        with pytest.raises(error):
            list(client.list_flights(options=_flight_options(headers())))
    assert client.do_get(ticket, options=_flight_options(_bearer(_jwt(["reader"])))).read_all().num_rows == 2
    with pytest.raises(requests.exceptions.RequestException):  # plain HTTP on the TLS port
        requests.get(live.base.replace("https", "http") + "/health/live", timeout=5)


def test_client_certificates_on_the_serve_deployment(live):
    """The Api replicas' own HTTPS listener and the Flight relay take client certificates (optional
    here, so keys keep working on both): a reader certificate reads, is refused on admin routes; a
    processor certificate gets what a processor key gets; expired, revoked and other-CA ones are
    refused at the handshake."""
    pki = live.pki

    def call(method: str, path: str, name: str | None, headers: dict | None = None) -> requests.Response:
        client = (str(pki.clients[name].cert), str(pki.clients[name].key)) if name else None
        return requests.request(method, f"{live.mtls}{path}", cert=client, headers=headers, timeout=30,
                                verify=str(live.tls.ca_cert), params={"limit": 1} if "transfers" in path else None)

    assert call("get", "/v1/token-transfers", "reader").status_code == 200
    assert call("get", "/admin/keys", "reader").status_code == 403
    assert call("get", "/v1/token-transfers", None).status_code == 401
    assert call("get", "/v1/token-transfers", None, _key(live.role_keys["reader"])).status_code == 200
    for method, path in [("get", "/v1/token-transfers"), ("get", "/health"), ("post", "/admin/keys")]:
        by_key = call(method, path, None, _key(live.role_keys["processor"])).status_code
        assert call(method, path, "processor").status_code == by_key, path
    for name in ("expired", "revoked", "other-ca"):
        with pytest.raises(requests.exceptions.ConnectionError):
            call("get", "/v1/token-transfers", name)
    ticket = flight.Ticket(json.dumps({"table": "ledgers", "start_ledger": 2, "end_ledger": 3}).encode())
    for name, outcome in [("reader", 2), ("processor", flight.FlightUnauthorizedError),
                          ("revoked", flight.FlightUnavailableError)]:
        client = flight.FlightClient(live.flight_url, tls_root_certs=live.tls.ca_cert.read_bytes(),
                                     cert_chain=pki.clients[name].cert.read_bytes(),
                                     private_key=pki.clients[name].key.read_bytes())
        if outcome == 2:
            assert client.do_get(ticket).read_all().num_rows == 2
        else:
            with pytest.raises(outcome):
                client.do_get(ticket).read_all()


def _flight_options(headers: dict[str, str]) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(k.lower().encode(), v.encode()) for k, v in headers.items()])


def test_bad_input_through_the_serve_proxy_is_refused_in_one_line(live):
    """tests/test_serve_bad_input.py in detail; here, the same refusals through Ray Serve's proxy."""
    headers = {"X-API-Key": live.role_keys["reader"]}

    def get(path: str, **kw) -> requests.Response:
        return requests.get(f"{live.base}{path}", verify=str(live.tls.ca_cert), timeout=30, **kw)

    assert get("/health/live", headers={"X-Padding": "a" * 65536}).status_code == 431
    overflow = base64.urlsafe_b64encode(f"{2**64}:0".encode()).decode()
    r = get("/v1/token-transfers", params={"cursor": overflow}, headers=headers)
    assert r.status_code == 422 and r.json()["detail"].startswith("invalid cursor"), r.text
    assert get("/v1/token-transfers", params={"limit": 1}, headers=headers).status_code == 200

    with live.subscribe(source="127.0.0.9", ping=False) as sub:
        sub.send({"action": "nope"})
        error = json.loads(sub.recv(30))
        assert error["type"] == "error" and "nope" in error["message"]
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                sub.recv(30)
        assert closed.value.rcvd.code == 1008

    ticket = flight.Ticket(json.dumps({"table": "token_transfers", "start_ledger": "abc"}).encode())
    with pytest.raises(flight.FlightServerError) as refused:
        live.flight_client().do_get(ticket, options=live.flight_options()).read_all()
    message = str(refused.value)
    assert "start_ledger" in message and not any(s in message for s in ("Traceback", 'File "', ".py", "\n"))


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
    # The error names the RPC URL, whose user info, path and query carry credentials: masked.
    wait_for(lambda: live.status().get("last_error"), timeout=30, what="the follower's error", interval=0.5)
    health, ready = live.get("/health"), live.get("/health/ready", key=None)
    assert "***" in health.json()["follower"]["last_error"] and "***" in health.json()["reason"]
    assert ready.json() == {"ready": False, "reason": "the follower is degraded"}  # no credentials, no details
    for text in (health.text, ready.text, live.get("/metrics").text):
        for secret in RPC_SECRETS:
            assert secret not in text
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
    assert set(health["follower"]["bulkheads"]) == {"rpc", "lake"}
    assert live.get("/health/ready", key=None).json() == {"ready": True, "reason": "ok"}
    metrics = live.get("/metrics").text
    for name in ("current_ledger", "ledgers_processed_total", "export_errors_total", "circuit_breaker_state",
                 "websocket_connections", "http_requests_total", "follower_lag_ledgers"):
        assert f"\n{name}" in metrics or metrics.startswith(name), name
    for dependency in ("rpc", "lake"):  # the bulkheads, beside the circuit breaker
        for name in ("bulkhead_in_use", "bulkhead_limit", "bulkhead_rejections_total"):
            assert f'\n{name}{{dependency="{dependency}"}}' in metrics, (name, dependency)


def test_readiness_answers_within_a_second_while_the_follower_restarts(live):
    """Kubernetes probes give up after 1 s: while the Follower replica restarts, /health/ready
    answers 503 within that bound instead of waiting for the follower (issue 15 saw over 5 s)."""
    live.ready_status()
    _kill_follower()
    codes, took = [], []
    deadline = time.monotonic() + 120
    while not (503 in codes and codes[-1] == 200) and time.monotonic() < deadline:
        began = time.monotonic()
        codes.append(live.get("/health/ready", key=None).status_code)
        took.append(time.monotonic() - began)
        time.sleep(0.2)
    assert 503 in codes and codes[-1] == 200, codes
    assert max(took) < 1.0, sorted(took)[-5:]


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
