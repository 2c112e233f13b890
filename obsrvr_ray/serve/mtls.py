"""The HTTPS listener for mutual TLS: each Api replica serves its own app on it, so the app learns
the client certificate its handshake verified.

Why not Ray Serve's proxy (see docs/decisions/0002-mutual-tls.md): Ray 2.60 passes `ssl_ca_certs`
to uvicorn but not `ssl_cert_reqs`, which stays CERT_NONE, so its proxy never asks for a client
certificate; and uvicorn puts nothing of the TLS session in the ASGI scope, so an app behind it
could not tell who the certificate named anyway. Here uvicorn runs with our own SSL context
(client CA, required/optional, CRL: obsrvr_ray/security/client_certs.py) and protocol classes that
add the verified certificate to each request's scope under CLIENT_CERT_EXTENSION. Only this
listener sets it; nothing a client sends can (scope extensions are the server's, not headers),
so a request through Serve's proxy carries no certificate and, when the listener requires one,
is refused by the Guard.

The listening socket has SO_REUSEPORT: replicas on one node share the port, the kernel spreads
connections among them.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from obsrvr_ray.security.client_certs import server_context
from obsrvr_ray.security.security_settings import SecuritySettings

CLIENT_CERT_EXTENSION = "obsrvr.client_certificate"  # {"der": bytes | None}: set by this listener only


def client_certificate(scope: Scope) -> bytes | None:
    """The DER of the client certificate this connection's handshake verified, else None."""
    return ((scope.get("extensions") or {}).get(CLIENT_CERT_EXTENSION) or {}).get("der")


def _with_certificate(app: ASGIApp, der: bytes | None) -> ASGIApp:
    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        scope = {**scope, "extensions": {**(scope.get("extensions") or {}), CLIENT_CERT_EXTENSION: {"der": der}}}
        await app(scope, receive, send)

    return call


class _CertificateInScope:
    """Protocol mixin: wraps the connection's app so every request on it carries the peer certificate.
    With CERT_OPTIONAL/REQUIRED, OpenSSL has verified any certificate getpeercert returns."""

    app: ASGIApp

    def connection_made(self, transport: asyncio.Transport, *args: object) -> None:
        super().connection_made(transport, *args)  # type: ignore[misc]
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self.app = _with_certificate(self.app, der or None)


class HttpProtocol(_CertificateInScope, HttpToolsProtocol):
    pass


class WebSocketProtocol(_CertificateInScope, WebSocketsSansIOProtocol):
    pass


def _socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class MtlsListener:
    """uvicorn serving `app` over TLS on host:port, taking client certificates as the settings say."""

    def __init__(self, app: ASGIApp, settings: SecuritySettings, host: str, port: int) -> None:
        context = server_context(settings, "https")
        self.sock = _socket(host, port)
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(
            app, http=HttpProtocol, ws=WebSocketProtocol, lifespan="off", access_log=False, log_config=None,
            ssl_context_factory=lambda _config, _default: context, timeout_graceful_shutdown=1))
        self.server.install_signal_handlers = lambda: None  # not the main thread of a replica
        self.task: asyncio.Task | None = None

    def start(self) -> MtlsListener:
        """Serve on the running event loop (the replica's); returns at once."""
        self.task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[self.sock]))
        return self

    def stop(self) -> None:
        self.server.should_exit = True

