"""Mutual TLS in front of the Flight server: a TLS terminator relaying each connection to the
plaintext gRPC server on loopback, remembering which client (address, verified certificate) each
relayed connection carries.

Why (docs/decisions/0002-mutual-tls.md): pyarrow 26's Flight server can require client
certificates from one CA (`verify_client`), but it has no optional mode and no CRL, and it tells a
handler nothing of the certificate (`peer_identity()` is the legacy auth handler's). Here the
handshake is Python's `ssl` with the listener's context (client CA, required/optional, CRL, ALPN
h2 for gRPC), and a handler finds its client by its gRPC peer, `ipv4:127.0.0.1:<port>`: the port
is the local end of the relay's connection to the server, which only the relay made. A process
connecting to the loopback port itself is in no table, so it has no certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass

from obsrvr_ray.security.client_certs import server_context
from obsrvr_ray.security.clientip import grpc_peer_host
from obsrvr_ray.security.security_settings import SecuritySettings

CHUNK = 256 * 1024
log = logging.getLogger("obsrvr_ray.serve.tls_relay")


@dataclass(frozen=True)
class Peer:
    address: str  # the client's address (for per-address limits), not the relay's
    certificate: bytes | None  # DER of the certificate the handshake verified


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class TlsRelay:
    """Listens on host:port with the settings' "flight" TLS context; relays to the backend port."""

    def __init__(self, settings: SecuritySettings, host: str, port: int) -> None:
        self.context = server_context(settings, "flight", alpn=("h2",))
        self.host, self.port = host, port
        self.backend_port: int | None = None
        self.peers: dict[int, Peer] = {}  # local port of a relayed connection -> its client
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None

    def start(self, backend_port: int) -> TlsRelay:
        """Listen (on a loop in a thread of its own: the caller may be on a running loop, as a Serve
        replica's constructor is) and relay to 127.0.0.1:backend_port; returns once listening."""
        self.backend_port = backend_port
        threading.Thread(target=self._loop.run_forever, name="flight-tls-relay", daemon=True).start()
        listening = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, self.host, self.port, ssl=self.context, reuse_address=True), self._loop)
        self._server = listening.result(timeout=30)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        client = writer.get_extra_info("peername")
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        except OSError as exc:
            log.warning("Flight relay cannot reach the server on port %s: %s", self.backend_port, exc)
            writer.close()
            return
        local = up_writer.get_extra_info("sockname")[1]
        self.peers[local] = Peer(address=str(client[0]) if client else "unknown", certificate=der or None)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self.peers.pop(local, None)

    def peer(self, grpc_peer: str | bytes | None) -> Peer | None:
        """The client behind a gRPC peer string of the backend, None when the relay did not make it."""
        if isinstance(grpc_peer, bytes):
            grpc_peer = grpc_peer.decode(errors="replace")
        if grpc_peer_host(grpc_peer) not in ("127.0.0.1", "::1"):
            return None
        port = grpc_peer.rpartition(":")[2]
        return self.peers.get(int(port)) if port.isdigit() else None

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
