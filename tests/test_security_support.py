"""Shared parts of the security tests (no tests here): real servers on loopback and real credentials.

`SecureApp` is a small FastAPI app wired exactly as the live app is meant to be (Guard
dependencies per route, Guard.websocket for the handshake, the admin router, install_security),
served by a real uvicorn in a thread. `Creds` makes every kind of credential the tests present:
API keys in every state and JWTs signed right and wrong.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ssl
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import requests
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Depends, FastAPI, WebSocket
from websockets.sync.client import connect as ws_connect

from obsrvr_ray.security.keystore import KeyStore
from obsrvr_ray.security.policy import CONTROL, INGEST, READ, SUBSCRIBE, Principal
from obsrvr_ray.security.security_settings import JwtSettings, SecuritySettings
from obsrvr_ray.serve.http_security import Guard, build_guard, websocket_subprotocol
from tests.conftest import free_port

HS_SECRET = "test-shared-secret-0123456789abcdefghijklmnop"
AUDIENCE, ISSUER = "obsrvr-ray", "https://issuer.test"


def make_app(settings: SecuritySettings) -> tuple[FastAPI, Guard]:
    """Routes needing each kind of permission, a WebSocket and the admin API, secured as the live app is."""
    guard, routers, secure = build_guard(settings)
    app = FastAPI(title="secure test app")

    reader = Depends(guard.require(READ))

    @app.get("/v1/data")
    async def data(principal: Principal = reader) -> dict:
        return {"rows": [1, 2, 3], "caller": principal.id}

    @app.post("/v1/ingest", dependencies=[Depends(guard.require(INGEST))])
    async def ingest() -> dict:
        return {"ingested": True}

    @app.post("/v1/follower/stop", dependencies=[Depends(guard.require(CONTROL))])
    async def stop() -> dict:
        return {"stopped": True}

    @app.get("/health/live")
    async def live() -> dict:
        return {"status": "alive"}

    @app.websocket("/v1/subscribe")
    async def subscribe(websocket: WebSocket) -> None:
        principal = await guard.websocket(websocket, SUBSCRIBE)
        if principal is None:
            return
        await websocket.accept(subprotocol=websocket_subprotocol(websocket))
        await websocket.send_json({"hello": principal.id, "roles": sorted(principal.roles)})
        await websocket.close()

    for router in routers:
        app.include_router(router)
    return secure(app), guard


@dataclass
class Server:
    """A real uvicorn server on a free loopback port, run in a thread."""

    app: FastAPI
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        # a short graceful shutdown: a client's lingering keep-alive TLS socket would otherwise hold it ~10 s
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile,
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_certfile else 'http'}://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.ssl_certfile else 'ws'}://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextlib.contextmanager
def serve(settings: SecuritySettings, **tls: str) -> Iterator[Server]:
    app, _ = make_app(settings)
    with Server(app, **tls) as server:
        yield server


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # never a proxy between the tests and loopback
    return s


def ws_open(url: str, headers: dict | None = None, subprotocols: list[str] | None = None,
            ssl_context: ssl.SSLContext | None = None):
    return ws_connect(url, additional_headers=headers or {}, subprotocols=subprotocols, proxy=None,
                      ssl=ssl_context, open_timeout=5)


def rsa_keys() -> tuple[bytes, str]:
    """A private key (PEM bytes, for signing) and its public key (PEM text, for settings)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            key.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode())


def ec_keys() -> tuple[bytes, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            key.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode())


def token(key: str | bytes = HS_SECRET, algorithm: str = "HS256", *, roles: Sequence[str] | str | None = ("reader",),
          exp: float = 300, nbf: float | None = None, aud: str | None = AUDIENCE, iss: str | None = ISSUER,
          sub: str = "alice", roles_claim: str = "roles") -> str:
    """A JWT expiring `exp` seconds from now (negative: already expired)."""
    now = time.time()
    claims: dict = {"sub": sub, "iat": int(now), "exp": int(now + exp), "jti": uuid.uuid4().hex}
    if roles is not None:
        claims[roles_claim] = list(roles) if not isinstance(roles, str) else roles
    if nbf is not None:
        claims["nbf"] = int(now + nbf)
    if aud is not None:
        claims["aud"] = aud
    if iss is not None:
        claims["iss"] = iss
    return jwt.encode(claims, key, algorithm=algorithm)


class Creds:
    """Every credential the rejection tests present, made against one key store and one JWT config."""

    def __init__(self, store_path: Path) -> None:
        self.store = KeyStore(store_path)
        self.rsa_private, self.rsa_public = rsa_keys()
        now = dt.datetime.now(dt.UTC)
        _, self.admin = self.store.create(["admin"], name="admin")
        _, self.reader = self.store.create(["reader"], name="reader")
        _, self.processor = self.store.create(["processor"], name="processor")
        revoked, self.revoked = self.store.create(["reader"], name="revoked")
        self.store.revoke(revoked.key_id)
        rotated, self.rotated_old = self.store.create(["reader"], name="rotated")
        _, self.rotated_new = self.store.rotate(rotated.key_id)
        _, self.expired = self.store.create(["reader"], name="expired", expires_at=now - dt.timedelta(seconds=1))
        self.wrong = self.reader[:-6] + ("AAAAAA" if not self.reader.endswith("AAAAAA") else "BBBBBB")
        self.other_rsa_private, _ = rsa_keys()

    def jwt_settings(self) -> JwtSettings:
        return JwtSettings(secret=HS_SECRET, public_key=self.rsa_public, issuer=ISSUER, audience=AUDIENCE)

    def settings(self, **overrides: object) -> SecuritySettings:
        values: dict = {"key_store": str(self.store.path), "jwt": self.jwt_settings(), "rate_per_key": 0,
                        "rate_per_ip": 0}
        values.update(overrides)
        return SecuritySettings(**values)


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


# name -> (the headers a caller presents, the HTTP status a read route must answer)
REJECTIONS = {
    "missing": (lambda c: {}, 401),
    "garbage api key": (lambda c: {"X-API-Key": "hunter2"}, 401),
    "wrong api key": (lambda c: {"X-API-Key": c.wrong}, 401),
    "revoked api key": (lambda c: {"X-API-Key": c.revoked}, 401),
    "rotated-away api key": (lambda c: {"X-API-Key": c.rotated_old}, 401),
    "expired api key": (lambda c: {"X-API-Key": c.expired}, 401),
    "revoked api key as bearer": (lambda c: _bearer(c.revoked), 401),
    "expired jwt": (lambda c: _bearer(token(exp=-120)), 401),
    "jwt not yet valid": (lambda c: _bearer(token(nbf=600)), 401),
    "jwt wrong hs256 secret": (lambda c: _bearer(token("x" * 40)), 401),
    "jwt wrong rs256 key": (lambda c: _bearer(token(c.other_rsa_private, "RS256")), 401),
    "jwt wrong audience": (lambda c: _bearer(token(aud="someone-else")), 401),
    "jwt wrong issuer": (lambda c: _bearer(token(iss="https://evil.test")), 401),
    "jwt alg none": (lambda c: _bearer(jwt.encode({"sub": "x", "roles": ["admin"], "exp": time.time() + 60},
                                                  None, "none")), 401),
    "processor key on a read route": (lambda c: {"X-API-Key": c.processor}, 403),
    "jwt without roles": (lambda c: _bearer(token(roles=None)), 403),
    "jwt processor on a read route": (lambda c: _bearer(token(roles=["processor"])), 403),
}
