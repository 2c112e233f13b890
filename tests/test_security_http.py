"""The security layer on a real uvicorn server: every refusal on REST and on the WebSocket
handshake, the admin key API, rate limits, security headers, CORS, TLS, dev mode, and a CLI
revoke in another process reaching the running server."""

from __future__ import annotations

import json
import logging
import os
import ssl
import subprocess
import sys
import time

import pytest
import requests
from websockets.exceptions import InvalidStatus

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.security.security_settings import SecuritySettings
from obsrvr_ray.security.tls import generate_self_signed
from obsrvr_ray.serve.http_security import API_CSP, DOCS_CSP, build_guard
from tests.test_security_support import REJECTIONS, Creds, serve, session, token, ws_open

# Runs `obsrvr-ray keys ...` through the project's real main(), adding the keys parser when the
# main parser does not have it yet (obsrvr_ray/cli/ registers it).
CLI = """
import sys
from obsrvr_ray import cli
from obsrvr_ray.cli.keys import register as add_keys_parser

build = cli.build_parser

def build_parser():
    parser = build()
    commands = parser._subparsers._group_actions[0]
    if "keys" not in commands.choices:
        add_keys_parser(commands)
    return parser

cli.build_parser = build_parser
sys.exit(cli.main(sys.argv[1:]))
"""


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=60,
                          env=env or dict(os.environ))


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Creds:
    return Creds(tmp_path_factory.mktemp("keys") / "keys.json")


@pytest.fixture(scope="module")
def server(creds: Creds):
    with serve(creds.settings()) as srv:
        yield srv


def test_valid_credentials_are_admitted(server, creds: Creds) -> None:
    http = session()
    for headers, caller in [
        ({"X-API-Key": creds.reader}, "key:"),
        ({"Authorization": f"Bearer {creds.reader}"}, "key:"),
        ({"X-API-Key": creds.admin}, "key:"),
        ({"X-API-Key": creds.rotated_new}, "key:"),
        ({"Authorization": f"Bearer {token()}"}, "jwt:alice"),
        ({"Authorization": f"Bearer {token(creds.rsa_private, 'RS256', sub='bob')}"}, "jwt:bob"),
        ({"Authorization": f"Bearer {token(roles='reader processor')}"}, "jwt:alice"),
    ]:
        r = http.get(f"{server.url}/v1/data", headers=headers)
        assert r.status_code == 200, (headers, r.text)
        assert r.json()["caller"].startswith(caller)


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_rest_refuses(server, creds: Creds, case: str) -> None:
    make_headers, status = REJECTIONS[case]
    r = session().get(f"{server.url}/v1/data", headers=make_headers(creds))
    assert r.status_code == status, r.text
    if status == 401:
        challenge = r.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="obsrvr-ray"')
        assert ("error=" in challenge) == (case != "missing")
    assert "ork_" not in r.text  # a refusal never echoes a key


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_websocket_handshake_refuses(server, creds: Creds, case: str) -> None:
    make_headers, status = REJECTIONS[case]
    with pytest.raises(InvalidStatus) as refused:
        ws_open(f"{server.ws_url}/v1/subscribe", headers=make_headers(creds))
    assert refused.value.response.status_code == status
    if status == 401:
        assert refused.value.response.headers["WWW-Authenticate"].startswith("Bearer")


def test_websocket_accepts_headers_and_the_bearer_subprotocol(server, creds: Creds) -> None:
    with ws_open(f"{server.ws_url}/v1/subscribe", headers={"X-API-Key": creds.reader}) as ws:
        assert '"hello":"key:' in ws.recv(timeout=5).replace(" ", "")
    with ws_open(f"{server.ws_url}/v1/subscribe", subprotocols=["bearer", f"bearer.{creds.reader}"]) as ws:
        assert ws.subprotocol == "bearer"  # the server echoes the marker, never the token
        assert '"hello":"key:' in ws.recv(timeout=5).replace(" ", "")
    with ws_open(f"{server.ws_url}/v1/subscribe", subprotocols=["bearer", f"bearer.{token(sub='carol')}"]) as ws:
        assert '"hello":"jwt:carol"' in ws.recv(timeout=5).replace(" ", "")
    for bad, status in [(creds.revoked, 401), (creds.processor, 403), (token(exp=-120), 401)]:
        with pytest.raises(InvalidStatus) as refused:
            ws_open(f"{server.ws_url}/v1/subscribe", subprotocols=["bearer", f"bearer.{bad}"])
        assert refused.value.response.status_code == status


def test_roles_policy_on_rest_routes(server, creds: Creds) -> None:
    http = session()
    expected = {  # (route, method) -> {credential: status}
        ("/v1/data", "get"): {creds.reader: 200, creds.processor: 403, creds.admin: 200},
        ("/v1/ingest", "post"): {creds.reader: 403, creds.processor: 200, creds.admin: 200},
        ("/v1/follower/stop", "post"): {creds.reader: 403, creds.processor: 200, creds.admin: 200},
        ("/admin/keys", "get"): {creds.reader: 403, creds.processor: 403, creds.admin: 200},
    }
    for (route, method), by_key in expected.items():
        for key, status in by_key.items():
            r = http.request(method, f"{server.url}{route}", headers={"X-API-Key": key})
            assert r.status_code == status, (route, r.text)
    r = http.post(f"{server.url}/v1/ingest", headers={"Authorization": f"Bearer {token(roles=['processor'])}"})
    assert r.status_code == 200
    r = http.get(f"{server.url}/admin/keys", headers={"Authorization": f"Bearer {token(roles=['admin'])}"})
    assert r.status_code == 200
    assert http.get(f"{server.url}/health/live").status_code == 200  # unguarded routes stay open


def test_admin_key_api_create_list_rotate_revoke(server, creds: Creds) -> None:
    http = session()
    admin = {"X-API-Key": creds.admin}
    r = http.post(f"{server.url}/admin/keys", headers=admin, json={"roles": ["reader"], "name": "dashboard",
                                                                    "expires_days": 1})
    assert r.status_code == 201, r.text
    created = r.json()
    key_id, secret = created["key"]["key_id"], created["secret"]
    assert secret.startswith(f"ork_{key_id}_") and created["key"]["state"] == "active"
    assert r.headers["Cache-Control"] == "no-store"
    assert http.get(f"{server.url}/v1/data", headers={"X-API-Key": secret}).status_code == 200

    listed = http.get(f"{server.url}/admin/keys", headers=admin)
    assert listed.status_code == 200
    assert secret not in listed.text and "sha256" not in listed.text
    assert any(k["key_id"] == key_id and k["last_used_at"] for k in listed.json())

    rotated = http.post(f"{server.url}/admin/keys/{key_id}/rotate", headers=admin).json()
    assert rotated["key"]["key_id"] == key_id and rotated["key"]["roles"] == ["reader"]
    assert http.get(f"{server.url}/v1/data", headers={"X-API-Key": secret}).status_code == 401
    assert http.get(f"{server.url}/v1/data", headers={"X-API-Key": rotated["secret"]}).status_code == 200

    assert http.post(f"{server.url}/admin/keys/{key_id}/revoke", headers=admin).json()["state"] == "revoked"
    assert http.get(f"{server.url}/v1/data", headers={"X-API-Key": rotated["secret"]}).status_code == 401
    assert http.post(f"{server.url}/admin/keys/{key_id}/rotate", headers=admin).status_code == 409
    assert http.post(f"{server.url}/admin/keys/ffffffffffff/revoke", headers=admin).status_code == 404
    bad_role = http.post(f"{server.url}/admin/keys", headers=admin, json={"roles": ["root"]})
    assert bad_role.status_code == 422
    assert http.post(f"{server.url}/admin/keys", headers={"X-API-Key": creds.reader},
                     json={"roles": ["admin"]}).status_code == 403


def test_rate_limit_per_key(creds: Creds) -> None:
    with serve(creds.settings(rate_per_key=0.2, burst_per_key=3)) as srv:
        http = session()
        statuses = [http.get(f"{srv.url}/v1/data", headers={"X-API-Key": creds.reader}).status_code
                    for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        r = http.get(f"{srv.url}/v1/data", headers={"X-API-Key": creds.reader})
        assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 5
        assert "credential" in r.json()["detail"]
        with pytest.raises(InvalidStatus) as refused:
            ws_open(f"{srv.ws_url}/v1/subscribe", headers={"X-API-Key": creds.reader})
        assert refused.value.response.status_code == 429
        assert int(refused.value.response.headers["Retry-After"]) >= 1
        # another credential from the same address has its own bucket
        assert http.get(f"{srv.url}/v1/data", headers={"X-API-Key": creds.admin}).status_code == 200
        assert http.get(f"{srv.url}/v1/data", headers={"Authorization": f"Bearer {token()}"}).status_code == 200


def test_rate_limit_per_address(creds: Creds) -> None:
    """Behind a trusted proxy (here: loopback) each forwarded client address has its own bucket;
    refused calls count too, so guessing is throttled before any credential is checked."""
    settings = creds.settings(rate_per_ip=0.2, burst_per_ip=4, trusted_proxies=("127.0.0.1",))
    with serve(settings) as srv:
        http = session()
        client_a = {"X-Forwarded-For": "203.0.113.7"}
        assert http.get(f"{srv.url}/v1/data", headers=client_a).status_code == 401
        assert http.get(f"{srv.url}/v1/data", headers={**client_a, "X-API-Key": creds.wrong}).status_code == 401
        for _ in range(2):
            assert http.get(f"{srv.url}/v1/data", headers={**client_a, "X-API-Key": creds.reader}).status_code == 200
        r = http.get(f"{srv.url}/v1/data", headers={**client_a, "X-API-Key": creds.admin})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert "address" in r.json()["detail"]
        client_b = {"X-Forwarded-For": "198.51.100.9, 127.0.0.1"}  # the right-most untrusted hop is the client
        assert http.get(f"{srv.url}/v1/data", headers={**client_b, "X-API-Key": creds.reader}).status_code == 200


def test_security_headers(server, creds: Creds) -> None:
    http = session()
    for r in [http.get(f"{server.url}/v1/data", headers={"X-API-Key": creds.reader}),
              http.get(f"{server.url}/v1/data"), http.get(f"{server.url}/openapi.json")]:
        assert r.headers["Content-Security-Policy"] == API_CSP
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert "Strict-Transport-Security" not in r.headers  # plain HTTP: HSTS would be ignored
    docs = http.get(f"{server.url}/docs")
    assert docs.status_code == 200 and docs.headers["Content-Security-Policy"] == DOCS_CSP
    assert "cdn.jsdelivr.net" in DOCS_CSP and "frame-ancestors 'none'" in DOCS_CSP
    schemes = http.get(f"{server.url}/openapi.json").json()["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}


def test_cors_allows_only_configured_origins(creds: Creds) -> None:
    allowed, other = "https://app.example", "https://evil.example"
    with serve(creds.settings(cors_origins=(allowed,))) as srv:
        http = session()
        preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-api-key"}
        ok = http.options(f"{srv.url}/v1/data", headers={"Origin": allowed, **preflight})
        assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == allowed
        assert "x-api-key" in ok.headers["Access-Control-Allow-Headers"].lower()
        assert ok.headers["X-Frame-Options"] == "DENY"
        bad = http.options(f"{srv.url}/v1/data", headers={"Origin": other, **preflight})
        assert bad.status_code == 400 and "Access-Control-Allow-Origin" not in bad.headers
        simple = http.get(f"{srv.url}/v1/data", headers={"Origin": allowed, "X-API-Key": creds.reader})
        assert simple.headers["Access-Control-Allow-Origin"] == allowed
        simple = http.get(f"{srv.url}/v1/data", headers={"Origin": other, "X-API-Key": creds.reader})
        assert "Access-Control-Allow-Origin" not in simple.headers
    with serve(creds.settings()) as srv:  # default: no origin allowed
        r = session().get(f"{srv.url}/v1/data", headers={"Origin": allowed, "X-API-Key": creds.reader})
        assert "Access-Control-Allow-Origin" not in r.headers


def test_tls_with_a_generated_certificate(creds: Creds, tmp_path) -> None:
    tls = generate_self_signed(tmp_path / "tls")
    assert oct(tls.key.stat().st_mode & 0o777) == "0o600"
    settings = creds.settings(tls_cert=str(tls.cert), tls_key=str(tls.key))
    with serve(settings, ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key)) as srv:
        http = session()
        r = http.get(f"{srv.url}/v1/data", headers={"X-API-Key": creds.reader}, verify=str(tls.ca_cert))
        assert r.status_code == 200
        assert r.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        assert http.get(f"{srv.url}/v1/data", verify=str(tls.ca_cert)).status_code == 401
        with pytest.raises(requests.exceptions.SSLError):  # the system trust store does not know our CA
            http.get(f"{srv.url}/v1/data", headers={"X-API-Key": creds.reader})
        context = ssl.create_default_context(cafile=str(tls.ca_cert))
        with ws_open(f"{srv.ws_url}/v1/subscribe", headers={"X-API-Key": creds.reader}, ssl_context=context) as ws:
            assert "hello" in ws.recv(timeout=5)
        with pytest.raises(ssl.SSLCertVerificationError):
            ws_open(f"{srv.ws_url}/v1/subscribe", ssl_context=ssl.create_default_context())


def test_auth_is_on_by_default(creds: Creds) -> None:
    settings = SecuritySettings.load({"key_store": str(creds.store.path)}, env={})
    assert settings.auth_enabled and not settings.dev_mode
    with serve(settings) as srv:
        assert session().get(f"{srv.url}/v1/data").status_code == 401
        assert session().get(f"{srv.url}/v1/data", headers={"X-API-Key": creds.reader}).status_code == 200


def test_dev_mode_only_on_loopback_and_loudly(caplog: pytest.LogCaptureFixture) -> None:
    for exposed in ("0.0.0.0", "::", "10.1.2.3", "example.com"):
        with pytest.raises(Exception, match="dev mode refused"):
            SecuritySettings(dev_mode=True, bind_hosts=("127.0.0.1", exposed))
    with pytest.raises(Exception, match="loopback only"):
        SecuritySettings(dev_mode=True)
    with pytest.raises(Exception, match="dev mode refused"):
        SecuritySettings.load({"bind_hosts": ["0.0.0.0"]}, env={"OBSRVR_DEV_MODE": "1"})
    with pytest.raises(ConfigError, match="security settings are required"):
        build_guard(None)  # no settings is not a way to turn auth off
    settings = SecuritySettings(dev_mode=True, bind_hosts=("127.0.0.1", "localhost", "::1"))
    assert not settings.auth_enabled
    logger = logging.getLogger("obsrvr_ray.security")
    logger.addHandler(caplog.handler)
    try:
        with serve(settings) as srv:
            r = session().get(f"{srv.url}/v1/data")
            assert r.status_code == 200 and r.json()["caller"] == "dev"
    finally:
        logger.removeHandler(caplog.handler)
    assert any(rec.levelno == logging.WARNING and rec.getMessage() == "security_dev_mode"
               and "AUTHENTICATION IS OFF" in rec.fields["warning"] for rec in caplog.records)


def test_cli_changes_reach_a_running_server(creds: Creds, tmp_path) -> None:
    store = tmp_path / "cli-keys.json"
    env = dict(os.environ, OBSRVR_KEY_STORE=str(store))
    with serve(creds.settings(key_store=str(store))) as srv:
        created = run_cli("keys", "create", "--roles", "reader,processor", "--name", "ci", "--expires-days", "2",
                          env=env)
        assert created.returncode == 0, created.stderr
        secret = created.stdout.strip()
        key_id = secret.split("_")[1]
        assert secret.startswith("ork_") and "created key" in created.stderr and secret not in created.stderr
        http = session()
        deadline = time.monotonic() + 3
        while http.get(f"{srv.url}/v1/data", headers={"X-API-Key": secret}).status_code != 200:
            assert time.monotonic() < deadline, "a key created by the CLI never worked"
            time.sleep(0.05)

        listed = run_cli("keys", "list", "--json", env=env)
        assert listed.returncode == 0 and secret not in listed.stdout
        assert [k["roles"] for k in json.loads(listed.stdout)] == [["reader", "processor"]]

        revoked = run_cli("keys", "revoke", key_id, "--store", str(store))
        assert revoked.returncode == 0, revoked.stderr
        began = time.monotonic()
        while http.get(f"{srv.url}/v1/data", headers={"X-API-Key": secret}).status_code != 401:
            assert time.monotonic() - began < 2.0, "the running server still accepts a key the CLI revoked"
            time.sleep(0.05)
        r = http.get(f"{srv.url}/v1/data", headers={"X-API-Key": secret})
        assert r.json()["detail"] == "API key revoked"

    missing = run_cli("keys", "revoke", "0123456789ab", "--store", str(store))
    assert missing.returncode == 1 and "no API key" in missing.stderr
    bad_role = run_cli("keys", "create", "--roles", "root", "--store", str(store))
    assert bad_role.returncode == 2 and "unknown role" in bad_role.stderr
    table = run_cli("keys", "list", "--store", str(store))
    assert table.returncode == 0 and "revoked" in table.stdout and "key_id" in table.stdout.splitlines()[0]
