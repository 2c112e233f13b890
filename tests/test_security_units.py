"""The plain-Python security parts: the policy table, token buckets, settings, the key store on
disk (hashed, 0600, atomic, shared between processes), JWT verification and client addresses."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
import time

import jwt
import pytest

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.security.apikeys import hash_key, key_id_of
from obsrvr_ray.security.clientip import client_address, grpc_peer_host, parse_networks
from obsrvr_ray.security.gate import Credentials, Gate
from obsrvr_ray.security.keystore import KeyStore
from obsrvr_ray.security.policy import (
    ADMIN,
    ADMINISTER,
    CONTROL,
    FLIGHT_READ,
    INGEST,
    MONITOR,
    POLICY,
    PROCESSOR,
    READ,
    READER,
    SUBSCRIBE,
    Principal,
    check_permission,
)
from obsrvr_ray.security.ratelimit import RateLimiter
from obsrvr_ray.security.refusals import (
    AuthenticationError,
    AuthUnavailable,
    KeyStateError,
    KeyStoreError,
    PermissionDenied,
    RateLimited,
    UnknownKey,
)
from obsrvr_ray.security.security_settings import JwtSettings, SecuritySettings
from obsrvr_ray.security.tokens import TokenVerifier
from tests.test_security_support import HS_SECRET, ec_keys, rsa_keys, token


# ---- policy -----------------------------------------------------------------------------------
def test_policy_table() -> None:
    def allowed(role: str) -> set[str]:
        return {p for p in POLICY if Principal("x", frozenset({role}), "test").may(p)}

    assert allowed(ADMIN) == set(POLICY)
    assert allowed(READER) == {READ, SUBSCRIBE, FLIGHT_READ, MONITOR}
    assert allowed(PROCESSOR) == {INGEST, CONTROL, MONITOR}
    assert not Principal("x", frozenset(), "test").may(READ)
    assert Principal("x", frozenset({READER, PROCESSOR}), "test").may(INGEST)
    assert not Principal("x", frozenset({READER, PROCESSOR}), "test").may(ADMINISTER)
    with pytest.raises(ConfigError, match="unknown permission"):
        check_permission("reed")


# ---- rate limits ------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_burst_refill_and_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)  # one token at 2/s
    assert limiter.take("b") == 0.0  # per client
    clock.now += 0.25
    assert limiter.take("a") == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.take("a") == 0.0
    clock.now += 100
    assert [limiter.take("a") for _ in range(4)][-1] > 0  # refills to burst, never beyond


def test_token_bucket_lru_bound() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, max_clients=3, clock=clock)
    for client in ("a", "b", "c"):
        limiter.take(client)
    limiter.take("a")  # a is now the most recently seen
    limiter.take("d")  # evicts b, the least recently seen
    assert len(limiter) == 3
    assert limiter.take("a") > 0 and limiter.take("c") > 0
    assert limiter.take("b") == 0.0  # forgotten, so it starts with a full bucket


def test_token_bucket_is_thread_safe() -> None:
    limiter = RateLimiter(rate=1e-9, burst=500)
    admitted = []

    def hammer() -> None:
        admitted.append(sum(limiter.take("k") == 0.0 for _ in range(200)))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 500


# ---- settings ---------------------------------------------------------------------------------
def test_settings_defaults_are_secure() -> None:
    s = SecuritySettings()
    assert s.auth_enabled and not s.dev_mode and not s.tls_enabled and s.cors_origins == ()
    assert s.rate_per_key > 0 and s.rate_per_ip > 0
    assert not s.public_metrics  # /metrics needs a key unless the operator opens it
    assert SecuritySettings.load(env={}).auth_enabled
    assert SecuritySettings.load(env={"OBSRVR_PUBLIC_METRICS": "true"}).public_metrics


def test_settings_dev_mode_loopback_only() -> None:
    for ok in (("127.0.0.1",), ("::1",), ("localhost", "127.0.0.2", "[::1]")):
        assert not SecuritySettings(dev_mode=True, bind_hosts=ok).auth_enabled
    for exposed in ("0.0.0.0", "::", "192.168.1.5", "my-host.internal"):
        with pytest.raises(ConfigError, match="dev mode refused"):
            SecuritySettings(dev_mode=True, bind_hosts=(exposed,))
    with pytest.raises(ConfigError, match="give bind_hosts"):
        SecuritySettings(dev_mode=True)


def test_settings_load_env_and_config(tmp_path) -> None:
    secret_file = tmp_path / "jwt-secret"
    secret_file.write_text(HS_SECRET + "\n")
    env = {"OBSRVR_KEY_STORE": "/srv/keys.json", "OBSRVR_CORS_ORIGINS": "https://a.example, https://b.example:8443",
           "OBSRVR_RATE_PER_IP": "7.5", "OBSRVR_BURST_PER_IP": "9", "OBSRVR_JWT_SECRET_FILE": str(secret_file),
           "OBSRVR_JWT_AUDIENCE": "api", "OBSRVR_TRUSTED_PROXIES": "10.0.0.0/8"}
    s = SecuritySettings.load({"rate_per_ip": 3, "jwt": {"roles_claim": "realm_access.roles"}}, env=env)
    assert s.key_store == "/srv/keys.json" and s.cors_origins == ("https://a.example", "https://b.example:8443")
    assert s.rate_per_ip == 3 and s.burst_per_ip == 9  # config beats env
    assert s.jwt.secret == HS_SECRET and s.jwt.audience == "api" and s.jwt.roles_claim == "realm_access.roles"
    assert HS_SECRET not in repr(s) and HS_SECRET not in json.dumps(s.describe())
    with pytest.raises(ConfigError, match=r"rate_per_kee: unknown key .*did you mean 'rate_per_key'"):
        SecuritySettings.load({"rate_per_kee": 1}, env={})
    with pytest.raises(ConfigError, match=r"jwt\.sekret"):
        SecuritySettings.load({"jwt": {"sekret": "x"}}, env={})
    with pytest.raises(ConfigError, match="OBSRVR_DEV_MODE"):
        SecuritySettings.load(env={"OBSRVR_DEV_MODE": "perhaps"})
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        JwtSettings(secret="short")
    with pytest.raises(ConfigError, match="not an origin"):
        SecuritySettings(cors_origins=("https://a.example/path",))
    with pytest.raises(ConfigError, match="go together"):
        SecuritySettings(tls_cert="cert.pem")
    with pytest.raises(ConfigError, match="trusted_proxies"):
        SecuritySettings(trusted_proxies=("not-an-ip",))


def test_gate_refuses_to_start_without_a_verifier() -> None:
    with pytest.raises(ConfigError, match="nothing can verify a caller"):
        Gate.from_settings(SecuritySettings())


# ---- key store --------------------------------------------------------------------------------
def test_keys_are_hashed_at_rest_with_mode_0600(tmp_path) -> None:
    path = tmp_path / "state" / "keys.json"
    store = KeyStore(path)
    record, secret = store.create(["reader", "processor"], name="etl")
    assert re.fullmatch(r"ork_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", secret) and key_id_of(secret) == record.key_id
    text = path.read_text()
    assert secret not in text and secret.split("_", 2)[2] not in text
    assert hash_key(secret) in text and record.prefix in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(os.stat(f"{path}.lock").st_mode & 0o777) == "0o600"
    assert "hash" not in repr(record) and record.hash not in repr(record)
    listed = store.list()
    assert [k.key_id for k in listed] == [record.key_id]
    assert "sha256" not in json.dumps(listed[0].public(dt.datetime.now(dt.UTC)))
    assert store.verify(secret).roles == ("reader", "processor")


def test_keystore_revoke_rotate_expire(tmp_path) -> None:
    now = [dt.datetime(2030, 1, 1, tzinfo=dt.UTC)]
    store = KeyStore(tmp_path / "keys.json", clock=lambda: now[0])
    record, old = store.create(["reader"], expires_at=now[0] + dt.timedelta(days=1))
    rotated, new = store.rotate(record.key_id)
    assert rotated.key_id == record.key_id and rotated.roles == record.roles and new != old
    with pytest.raises(AuthenticationError, match="invalid API key"):
        store.verify(old)
    assert store.verify(new).key_id == record.key_id
    now[0] += dt.timedelta(days=2)
    with pytest.raises(AuthenticationError, match="API key expired"):
        store.verify(new)
    store.revoke(record.key_id)
    first_revoked = store.get(record.key_id).revoked_at
    now[0] += dt.timedelta(days=1)
    assert store.revoke(record.key_id).revoked_at == first_revoked
    with pytest.raises(AuthenticationError, match="API key revoked"):
        store.verify(new)
    with pytest.raises(KeyStateError):
        store.rotate(record.key_id)
    with pytest.raises(UnknownKey):
        store.revoke("0123456789ab")
    with pytest.raises(ConfigError, match="unknown role"):
        store.create(["superuser"])
    with pytest.raises(AuthenticationError, match="malformed"):
        store.verify("ork_nope")


def test_keystore_sees_another_writers_change(tmp_path) -> None:
    path = tmp_path / "keys.json"
    server_view, cli_view = KeyStore(path, check_interval=0.2), KeyStore(path)
    record, secret = cli_view.create(["reader"])
    time.sleep(0.25)
    assert server_view.verify(secret).key_id == record.key_id
    cli_view.revoke(record.key_id)
    time.sleep(0.25)
    with pytest.raises(AuthenticationError, match="revoked"):
        server_view.verify(secret)


def test_keystore_usage_is_flushed_in_batches(tmp_path) -> None:
    path = tmp_path / "keys.json"
    store = KeyStore(path, usage_flush_interval=3600)
    record, secret = store.create(["reader"])
    store.verify(secret)
    assert store.get(record.key_id).last_used_at is not None  # visible at once in this process
    assert json.loads(path.read_text())["keys"][0]["last_used_at"] is None  # not a write per request
    store.flush_usage()
    assert json.loads(path.read_text())["keys"][0]["last_used_at"] is not None


def _create_keys(path: str, count: int) -> None:
    store = KeyStore(path)
    for i in range(count):
        store.create(["reader"], name=f"{threading.get_ident()}-{i}")


WRITER = """
import sys
from obsrvr_ray.security.keystore import KeyStore
store = KeyStore(sys.argv[1])
for i in range(int(sys.argv[2])):
    store.create(["reader"], name=f"process-{i}")
"""


def test_keystore_writes_are_atomic_and_never_lost(tmp_path) -> None:
    """Two processes and two threads write at once while a reader parses the file non-stop: the
    reader never sees a partial file, no write is lost, and no temporary file is left behind."""
    path = tmp_path / "keys.json"
    KeyStore(path).create(["admin"], name="seed")
    stop, torn = threading.Event(), []

    def read_loop() -> None:
        while not stop.is_set():
            try:
                json.loads(path.read_bytes())
            except json.JSONDecodeError as exc:
                torn.append(exc)

    reader = threading.Thread(target=read_loop)
    reader.start()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), "15"]) for _ in range(2)]
    threads = [threading.Thread(target=_create_keys, args=(str(path), 15)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        assert p.wait(timeout=60) == 0
    stop.set()
    reader.join()
    assert torn == []
    assert len(KeyStore(path).list()) == 1 + 4 * 15
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json", "keys.json.lock"]


def test_unreadable_store_fails_closed(tmp_path) -> None:
    path = tmp_path / "keys.json"
    store = KeyStore(path, check_interval=0)
    _, secret = store.create(["reader"])
    gate = Gate(SecuritySettings(rate_per_ip=0, rate_per_key=0), store=store)
    assert gate.check(Credentials(api_key=secret), "127.0.0.1", READ).kind == "api_key"
    path.write_text("{ half a file")
    with pytest.raises(AuthUnavailable):
        gate.check(Credentials(api_key=secret), "127.0.0.1", READ)
    with pytest.raises(KeyStoreError, match="malformed"):
        KeyStore(path).list()


# ---- JWT ---------------------------------------------------------------------------------------
def _hs256(claims: dict, secret: bytes) -> str:
    """A JWT MACed by hand (PyJWT itself refuses to use a PEM key as an HMAC secret)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = json.dumps({"alg": "HS256", "typ": "JWT"}).encode()
    signing_input = f"{b64(header)}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def test_jwt_es256_rs256_and_roles_claims() -> None:
    ec_private, ec_public = ec_keys()
    verifier = TokenVerifier(JwtSettings(public_key=ec_public, roles_claim="realm_access.roles"))
    nested = jwt.encode({"sub": "svc", "exp": time.time() + 60,
                         "realm_access": {"roles": ["processor", "offline_access"]}}, ec_private, algorithm="ES256")
    principal = verifier.verify(nested)
    assert principal.id == "jwt:svc" and principal.roles == {PROCESSOR} and principal.kind == "jwt"

    rsa_private, rsa_public = rsa_keys()
    verifier = TokenVerifier(JwtSettings(public_key=rsa_public, roles_claim="scope"))
    principal = verifier.verify(token(rsa_private, "RS256", roles="reader admin", roles_claim="scope", aud=None))
    assert principal.roles == {READER, ADMIN}
    # alg confusion: an HS256 token MACed with the (public) RSA key as the shared secret is refused,
    # and so is one when an HS256 secret is configured too (it is checked against that secret only)
    forged = _hs256({"sub": "x", "exp": int(time.time()) + 60, "scope": "admin"}, rsa_public.encode())
    with pytest.raises(AuthenticationError, match="algorithm 'HS256' not accepted"):
        verifier.verify(forged)
    both = TokenVerifier(JwtSettings(secret=HS_SECRET, public_key=rsa_public, roles_claim="scope"))
    with pytest.raises(AuthenticationError, match="signature invalid"):
        both.verify(forged)
    assert both.verify(token(HS_SECRET, "HS256", roles="admin", roles_claim="scope", aud=None)).roles == {ADMIN}
    with pytest.raises(AuthenticationError, match="token audience"):
        verifier.verify(token(rsa_private, "RS256"))  # carries aud, none configured: refused
    with pytest.raises(AuthenticationError, match="required claim"):
        verifier.verify(jwt.encode({"sub": "x"}, rsa_private, algorithm="RS256"))  # no exp
    with pytest.raises(AuthenticationError, match="malformed"):
        verifier.verify("not.a.jwt")
    with pytest.raises(ConfigError, match="PEM public key"):
        TokenVerifier(JwtSettings(public_key="-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"))


def test_gate_order_and_errors(tmp_path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    _, reader = store.create(["reader"])
    gate = Gate(SecuritySettings(rate_per_ip=1e-6, burst_per_ip=3, rate_per_key=0), store=store)
    with pytest.raises(AuthenticationError) as missing:
        gate.check(Credentials(), "198.51.100.1", READ)
    assert missing.value.presented is False
    with pytest.raises(PermissionDenied, match="ingest needs role admin or processor; this caller has reader"):
        gate.check(Credentials(api_key=reader), "198.51.100.1", INGEST)
    with pytest.raises(AuthenticationError, match="not both"):
        gate.check(Credentials(bearer=token(), api_key=reader), "198.51.100.1", READ)
    with pytest.raises(RateLimited) as limited:  # the address bucket is checked before anything else
        gate.check(Credentials(api_key=reader), "198.51.100.1", READ)
    assert limited.value.retry_after > 1
    with pytest.raises(AuthenticationError, match=r"JWT.*not accepted"):
        gate.check(Credentials(bearer=token()), "198.51.100.2", READ)
    assert Credentials.from_headers({"authorization": "bearer  abc ", "x-api-key": ""}.get) == Credentials("abc")
    assert Credentials.from_headers({"authorization": "Basic dXNlcg=="}.get) == Credentials()


# ---- client addresses -------------------------------------------------------------------------
def test_client_address_believes_only_trusted_proxies() -> None:
    trusted = parse_networks(["10.0.0.0/8", "127.0.0.1"])
    assert client_address("203.0.113.5", "1.2.3.4", trusted) == "203.0.113.5"  # untrusted peer: header ignored
    assert client_address("10.1.2.3", "1.2.3.4", trusted) == "1.2.3.4"
    assert client_address("10.1.2.3", "6.6.6.6, 1.2.3.4, 10.9.9.9", trusted) == "1.2.3.4"  # spoofed left entry
    assert client_address("10.1.2.3", None, trusted) == "10.1.2.3"
    assert client_address("10.1.2.3", "1.2.3.4", ()) == "10.1.2.3"
    assert grpc_peer_host("ipv4:127.0.0.1:39170") == "127.0.0.1"
    assert grpc_peer_host(b"ipv6:%5B::1%5D:48768") == "::1"
    assert grpc_peer_host("ipv6:[2001:db8::1]:5") == "2001:db8::1"
    assert grpc_peer_host("unix:/tmp/sock") is None
