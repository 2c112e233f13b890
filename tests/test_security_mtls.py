"""Mutual TLS on real servers with certificates from `generate_pki` (what `obsrvr-ray certs` writes):
the app's HTTPS listener (uvicorn with the client-CA context, as each Api replica runs it) for REST
and the WebSocket, and a real Flight server behind its TLS relay. Certificates map to roles through
`tls.identities`; expired, revoked, other-CA and missing certificates are refused; API keys and
JWTs keep working beside them. tests/test_live_app.py shows the same on the Serve deployment."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Iterator

import pyarrow as pa
import pytest
import requests
from pyarrow import flight
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from obsrvr_ray.cli import main
from obsrvr_ray.errors import ConfigError
from obsrvr_ray.security.security_settings import SecuritySettings
from obsrvr_ray.security.tls import Pki, generate_pki
from obsrvr_ray.serve.flight_auth import flight_listener
from obsrvr_ray.serve.mtls import MtlsListener
from tests.test_security_flight import TABLE, TransfersServer, options
from tests.test_security_support import Creds, Server, make_app, session, token, ws_open

REFUSED = ("other-ca", "expired", "revoked")  # each refused at the handshake, like no certificate when required


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return generate_pki(tmp_path_factory.mktemp("pki"), clients=("admin", "reader", "processor", "stranger"))


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Creds:
    return Creds(tmp_path_factory.mktemp("mtls-keys") / "keys.json")


def mtls_settings(pki: Pki, creds: Creds, mode: str) -> SecuritySettings:
    identities = {pki.clients[role].identity: [role] for role in ("admin", "reader")}
    identities["CN=processor,O=obsrvr-ray test"] = ["processor"]  # by subject, not SAN
    return creds.settings(tls_cert=str(pki.server.cert), tls_key=str(pki.server.key),
                          tls={"client_ca": str(pki.server.ca_cert), "client_cert": mode, "crl": str(pki.crl),
                               "identities": identities})


class Listener:
    """The HTTPS listener of an Api replica, on its own event loop in a thread."""

    def __init__(self, settings: SecuritySettings) -> None:
        app, _ = make_app(settings)
        self.listener = MtlsListener(app, settings, "127.0.0.1", 0)
        self.url = f"https://127.0.0.1:{self.listener.port}"
        self.ws_url = f"wss://127.0.0.1:{self.listener.port}"

        async def run() -> None:
            await self.listener.start().task

        self.thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)

    def __enter__(self) -> Listener:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.listener.server.started:
            assert time.monotonic() < deadline, "the listener did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.stop()
        self.thread.join(timeout=10)


@contextlib.contextmanager
def flight_server(settings: SecuritySettings) -> Iterator[tuple[TransfersServer, int]]:
    location, opts, relay = flight_listener(settings, "127.0.0.1", 0)
    server = TransfersServer(location, **opts)
    relay.start(server.port)
    try:
        yield server, relay.port
    finally:
        relay.stop()
        server.shutdown()


@pytest.fixture(scope="module")
def required(pki: Pki, creds: Creds):
    settings = mtls_settings(pki, creds, "required")
    with Listener(settings) as http, flight_server(settings) as (server, port):
        yield http, server, port


@pytest.fixture(scope="module")
def optional(pki: Pki, creds: Creds):
    settings = mtls_settings(pki, creds, "optional")
    with Listener(settings) as http, flight_server(settings) as (server, port):
        yield http, server, port


def cert(pki: Pki, name: str | None) -> tuple[str, str] | None:
    return (str(pki.clients[name].cert), str(pki.clients[name].key)) if name else None


def get(pki: Pki, url: str, name: str | None, headers: dict | None = None, method: str = "get"):
    return session().request(method, url, verify=str(pki.server.ca_cert), cert=cert(pki, name), headers=headers,
                             timeout=10)


def ws_context(pki: Pki, name: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.server.ca_cert))
    if name:
        context.load_cert_chain(*cert(pki, name))
    return context


def flight_client(pki: Pki, port: int, name: str | None) -> flight.FlightClient:
    kw = ({"cert_chain": pki.clients[name].cert.read_bytes(), "private_key": pki.clients[name].key.read_bytes()}
          if name else {})
    return flight.connect(f"grpc+tls://127.0.0.1:{port}", tls_root_certs=pki.server.ca_cert.read_bytes(), **kw)


def flight_calls(client: flight.FlightClient, headers: dict | None = None) -> dict[str, str]:
    """Each kind of Flight call: "ok" or the refusal's class name."""
    calls = {
        "do_get": lambda: client.do_get(flight.Ticket(b"all"), options(headers or {})).read_all(),
        "list_flights": lambda: list(client.list_flights(options=options(headers or {}))),
        "do_put": lambda: _put(client, headers or {}),
        "do_action": lambda: list(client.do_action(flight.Action("stop", b""), options(headers or {}))),
    }
    out = {}
    for name, call in calls.items():
        try:
            call()
            out[name] = "ok"
        except flight.FlightError as exc:
            out[name] = type(exc).__name__
    return out


def _put(client: flight.FlightClient, headers: dict) -> None:
    writer, _ = client.do_put(flight.FlightDescriptor.for_path("in"), TABLE.schema, options(headers))
    writer.write_table(pa.table({"ledger_sequence": pa.array([1], pa.uint32()), "amount": pa.array([1], pa.int64())}))
    writer.close()


def test_a_reader_certificate_reads_rest_websocket_and_flight(pki, required) -> None:
    http, server, port = required
    r = get(pki, f"{http.url}/v1/data", "reader")
    assert r.status_code == 200, r.text
    assert r.json()["caller"] == "cert:spiffe://obsrvr-ray.test/reader"  # the identity the logs and limits see
    with ws_open(f"{http.ws_url}/v1/subscribe", ssl_context=ws_context(pki, "reader")) as ws:
        assert '"hello":"cert:spiffe://obsrvr-ray.test/reader"' in ws.recv(timeout=5).replace(" ", "")
    with flight_client(pki, port, "reader") as client:
        assert client.do_get(flight.Ticket(b"all"), options({})).read_all().equals(TABLE)
    assert server.callers[-1] == "cert:spiffe://obsrvr-ray.test/reader"


def test_a_reader_certificate_is_refused_on_admin_and_processor_routes(pki, required) -> None:
    http, _, port = required
    assert get(pki, f"{http.url}/admin/keys", "reader").status_code == 403
    assert get(pki, f"{http.url}/v1/ingest", "reader", method="post").status_code == 403
    with flight_client(pki, port, "reader") as client:
        calls = flight_calls(client)
    assert calls == {"do_get": "ok", "list_flights": "ok", "do_put": "FlightUnauthorizedError",
                     "do_action": "FlightUnauthorizedError"}


@pytest.mark.parametrize("name", [None, *REFUSED])
def test_no_certificate_another_cas_an_expired_and_a_revoked_one_are_refused(pki, required, optional, name) -> None:
    http, _, port = required
    with pytest.raises(requests.exceptions.ConnectionError):  # SSLError or the connection closed by the server
        get(pki, f"{http.url}/v1/data", name, headers={"X-API-Key": "irrelevant"})
    # TLS 1.3: the server's alert arrives after the client's side of the handshake, so as a failed read
    with pytest.raises((ssl.SSLError, ConnectionError, InvalidHandshake, ConnectionClosed)), \
            ws_open(f"{http.ws_url}/v1/subscribe", ssl_context=ws_context(pki, name)) as ws:
        ws.recv(timeout=5)  # an accepted subscription would say hello
    with flight_client(pki, port, name) as client, pytest.raises(flight.FlightUnavailableError):
        client.do_get(flight.Ticket(b"all"), options({})).read_all()
    http, _, port = optional  # a certificate that fails is refused even where certificates are optional
    if name is None:
        assert get(pki, f"{http.url}/v1/data", None).status_code == 401
        with flight_client(pki, port, None) as client, pytest.raises(flight.FlightUnauthenticatedError):
            client.do_get(flight.Ticket(b"all"), options({})).read_all()
        return
    with pytest.raises(requests.exceptions.ConnectionError):
        get(pki, f"{http.url}/v1/data", name)
    with flight_client(pki, port, name) as client, pytest.raises(flight.FlightUnavailableError):
        client.do_get(flight.Ticket(b"all"), options({})).read_all()


def test_a_processor_certificate_does_what_a_processor_key_does(pki, creds, required, optional) -> None:
    routes = [("get", "/v1/data"), ("post", "/v1/ingest"), ("post", "/v1/follower/stop"), ("get", "/admin/keys")]
    http, _, port = required
    by_cert = {route: get(pki, f"{http.url}{route[1]}", "processor", method=route[0]).status_code for route in routes}
    http_opt, _, port_opt = optional
    by_key = {route: get(pki, f"{http_opt.url}{route[1]}", None, {"X-API-Key": creds.processor},
                         method=route[0]).status_code for route in routes}
    assert by_cert == by_key == {routes[0]: 403, routes[1]: 200, routes[2]: 200, routes[3]: 403}
    with flight_client(pki, port, "processor") as client:
        flight_by_cert = flight_calls(client)
    with flight_client(pki, port_opt, None) as client:
        flight_by_key = flight_calls(client, {"x-api-key": creds.processor})
    assert flight_by_cert == flight_by_key == {"do_get": "FlightUnauthorizedError",
                                               "list_flights": "FlightUnauthorizedError", "do_put": "ok",
                                               "do_action": "ok"}


def test_the_audit_log_names_each_certificate_caller(pki, required, caplog) -> None:
    """Refusals and admitted changes are audited with the identity the certificate maps to, on
    REST and on Flight; the secret material never appears."""
    http, _, port = required
    caplog.set_level(logging.INFO, logger="obsrvr_ray.security.audit")
    get(pki, f"{http.url}/admin/keys", "reader")
    get(pki, f"{http.url}/v1/ingest", "processor", method="post")
    with flight_client(pki, port, "reader") as client:
        flight_calls(client)
    with flight_client(pki, port, "stranger") as client:
        flight_calls(client)
    lines = [(r.getMessage(), r.fields.get("principal"), r.fields.get("permission"))
             for r in caplog.records if r.name == "obsrvr_ray.security.audit"]
    reader, stranger = "cert:spiffe://obsrvr-ray.test/reader", "cert:spiffe://obsrvr-ray.test/stranger"
    assert ("permission_refused", reader, "administer") in lines  # REST
    assert [who for event, who, permission in lines if (event, permission) == ("admitted", "ingest")] == [
        "cert:CN=processor,O=obsrvr-ray test"]  # mapped by its subject
    assert ("permission_refused", reader, "ingest") in lines  # Flight do_put
    assert ("permission_refused", stranger, "flight_read") in lines  # no mapping: named, no roles
    assert not [r for r in caplog.records if "BEGIN" in r.getMessage() or "PRIVATE" in str(r.__dict__)]


def test_a_certificate_without_a_mapping_has_no_rights(pki, required) -> None:
    http, _, port = required
    for method, path in [("get", "/v1/data"), ("post", "/v1/ingest"), ("get", "/admin/keys")]:
        r = get(pki, f"{http.url}{path}", "stranger", method=method)
        assert r.status_code == 403 and "has no roles" in r.json()["detail"], r.text
    with pytest.raises(InvalidStatus) as refused:
        ws_open(f"{http.ws_url}/v1/subscribe", ssl_context=ws_context(pki, "stranger"))
    assert refused.value.response.status_code == 403
    with flight_client(pki, port, "stranger") as client:
        assert set(flight_calls(client).values()) == {"FlightUnauthorizedError"}


def test_keys_and_jwts_work_beside_certificates(pki, creds, required, optional) -> None:
    http, _, port = optional
    for headers, caller in [({"X-API-Key": creds.reader}, "key:"), ({"Authorization": f"Bearer {token()}"}, "jwt:")]:
        r = get(pki, f"{http.url}/v1/data", None, headers)
        assert r.status_code == 200 and r.json()["caller"].startswith(caller), r.text
    with flight_client(pki, port, None) as client:
        assert flight_calls(client, {"authorization": f"Bearer {token()}"})["do_get"] == "ok"
    # A header credential sent with a certificate is the caller; a bad one is refused, not ignored.
    http, _, port = required
    r = get(pki, f"{http.url}/v1/data", "stranger", {"X-API-Key": creds.reader})
    assert r.status_code == 200 and r.json()["caller"].startswith("key:"), r.text
    assert get(pki, f"{http.url}/v1/data", "reader", {"X-API-Key": creds.revoked}).status_code == 401
    with flight_client(pki, port, "processor") as client:
        assert flight_calls(client, {"x-api-key": creds.reader})["do_get"] == "ok"


def test_where_certificates_are_required_a_way_around_the_listener_is_refused(pki, creds, required) -> None:
    """Serve's proxy (no client certificates) and the Flight server's loopback port behind its relay:
    a valid key is refused there, since no handshake checked a certificate."""
    settings = mtls_settings(pki, creds, "required")
    app, _ = make_app(settings)
    with Server(app, ssl_certfile=str(pki.server.cert), ssl_keyfile=str(pki.server.key)) as proxy:
        r = get(pki, f"{proxy.url}/v1/data", "reader", {"X-API-Key": creds.reader})
    assert r.status_code == 401 and "client certificate is required" in r.json()["detail"]
    _, server, _ = required
    with flight.connect(f"grpc+tcp://127.0.0.1:{server.port}") as client:
        assert set(flight_calls(client, {"x-api-key": creds.admin}).values()) == {"FlightUnauthenticatedError"}


def test_settings_refuse_client_certificates_without_a_server_certificate(pki, creds) -> None:
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        creds.settings(tls={"client_ca": str(pki.server.ca_cert)})
    with pytest.raises(ConfigError, match="unknown role"):
        mtls_settings(pki, creds, "required").model_copy().check(
            {"tls_cert": str(pki.server.cert), "tls_key": str(pki.server.key),
             "tls": {"client_ca": str(pki.server.ca_cert), "identities": {"CN=x": ["root"]}}})
    per_listener = SecuritySettings.load({"tls_cert": str(pki.server.cert), "tls_key": str(pki.server.key),
                                          "tls": {"flight": {"client_ca": str(pki.server.ca_cert)}}},
                                         env={"OBSRVR_TLS_CLIENT_CERT": "optional"})
    assert per_listener.tls.policy("https") is None
    assert per_listener.tls.policy("flight").required is False


def test_the_certs_command_writes_what_the_listeners_take(tmp_path, capsys) -> None:
    assert main(["certs", str(tmp_path), "--clients", "reader"]) == 0
    out = capsys.readouterr().out
    assert "spiffe://obsrvr-ray.test/reader" in out
    names = {p.name for p in tmp_path.iterdir()}
    assert {"ca.pem", "server.pem", "server-key.pem", "crl.pem", "client-reader.pem", "client-expired.pem",
            "client-revoked.pem", "client-other-ca.pem"} <= names
    assert oct((tmp_path / "client-reader-key.pem").stat().st_mode & 0o777) == "0o600"
