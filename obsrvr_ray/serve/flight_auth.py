"""Arrow Flight calls through the same Gate as HTTP: the same headers (`Authorization: Bearer …`
or `x-api-key`), the same keys, tokens, roles and limits.

Mount: `options, scheme = flight_server_options(settings)`, then
`FlightServerBase(f"{scheme}://{host}:{port}", **options)`, and begin every handler with
`principal = caller(context)`. The middleware authenticates,
applies the per-credential limit and checks the method's permission before the handler runs;
`caller` adds the per-address limit, because gRPC tells middleware the method but not the peer.
With client certificates (`tls.client_ca` for the flight listener), the server listens on loopback
behind a TLS relay (`tls_relay.py`) that verifies them: `flight_listener` plans both. The check
then waits for `caller`, which knows the gRPC peer and so the relayed connection's certificate.
Refusals: FlightUnauthenticatedError (gRPC UNAUTHENTICATED), FlightUnauthorizedError
(PERMISSION_DENIED), FlightUnavailableError for rate limits (retryable; the message says when).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from pyarrow import flight

from obsrvr_ray.security.clientip import grpc_peer_host
from obsrvr_ray.security.gate import Credentials, Gate
from obsrvr_ray.security.policy import ADMINISTER, CONTROL, FLIGHT_READ, INGEST, Principal, check_permission
from obsrvr_ray.security.refusals import AuthenticationError, PermissionDenied, RateLimited, SecurityError
from obsrvr_ray.security.security_settings import SecuritySettings
from obsrvr_ray.serve.tls_relay import TlsRelay

MIDDLEWARE_KEY = "auth"
Method = flight.FlightMethod
# Flight method -> permission; methods not listed (DO_EXCHANGE, HANDSHAKE) need ADMINISTER.
FLIGHT_PERMISSIONS: dict[flight.FlightMethod, str] = {
    Method.DO_GET: FLIGHT_READ,
    Method.LIST_FLIGHTS: FLIGHT_READ,
    Method.GET_FLIGHT_INFO: FLIGHT_READ,
    Method.GET_SCHEMA: FLIGHT_READ,
    Method.LIST_ACTIONS: FLIGHT_READ,
    Method.DO_PUT: INGEST,
    Method.DO_ACTION: CONTROL,
}


def to_flight_error(exc: SecurityError) -> flight.FlightError:
    if isinstance(exc, AuthenticationError):
        return flight.FlightUnauthenticatedError(str(exc))
    if isinstance(exc, PermissionDenied):
        return flight.FlightUnauthorizedError(str(exc))
    if isinstance(exc, RateLimited):
        return flight.FlightUnavailableError(f"{exc}; retry after {max(1, math.ceil(exc.retry_after))} s")
    return flight.FlightUnavailableError(str(exc))


class CallerMiddleware(flight.ServerMiddleware):
    """Carries the caller of one call to its handler: admitted already, or (behind the TLS relay)
    its header credentials and permission, checked by `caller` with the connection's certificate."""

    def __init__(self, principal: Principal | None, gate: Gate, credentials: Credentials | None = None,
                 permission: str = ADMINISTER, relay: TlsRelay | None = None) -> None:
        self.principal = principal
        self.gate = gate
        self.credentials = credentials
        self.permission = permission
        self.relay = relay


class FlightAuthMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Admits or refuses each call from its headers, before the handler runs (behind the TLS relay:
    in `caller`, which has the peer, so the certificate)."""

    def __init__(self, gate: Gate, permissions: Mapping[flight.FlightMethod, str] = FLIGHT_PERMISSIONS,
                 relay: TlsRelay | None = None) -> None:
        super().__init__()
        self.gate = gate
        self.permissions = {method: check_permission(p) for method, p in permissions.items()}
        self.relay = relay

    def start_call(self, info: flight.CallInfo, headers: dict) -> CallerMiddleware:
        def header(name: str) -> str | None:
            values = headers.get(name)
            value = values[0] if values else None
            return value.decode(errors="replace") if isinstance(value, bytes) else value

        permission = self.permissions.get(info.method, ADMINISTER)
        credentials = Credentials.from_headers(header)
        if self.relay is not None:
            return CallerMiddleware(None, self.gate, credentials, permission, self.relay)
        try:
            principal = self.gate.check(credentials, None, permission)
        except SecurityError as exc:
            raise to_flight_error(exc) from exc
        return CallerMiddleware(principal, self.gate)


def caller(context: flight.ServerCallContext) -> Principal:
    """The admitted caller of this call, after the per-address limit; refuses when auth is not mounted."""
    middleware = context.get_middleware(MIDDLEWARE_KEY)
    if not isinstance(middleware, CallerMiddleware):
        raise flight.FlightUnauthenticatedError("this Flight server was started without its auth middleware")
    try:
        if middleware.relay is None:
            middleware.gate.limit_address(grpc_peer_host(context.peer()))
        elif middleware.principal is None:
            peer = middleware.relay.peer(context.peer())
            policy = middleware.gate.settings.tls.policy("flight")
            credentials = replace(middleware.credentials, certificate=peer.certificate if peer else None)
            middleware.principal = middleware.gate.check(
                credentials, peer.address if peer else grpc_peer_host(context.peer()), middleware.permission,
                certificate_required=bool(policy and policy.required))
    except SecurityError as exc:
        raise to_flight_error(exc) from exc
    return middleware.principal


def flight_server_options(settings: SecuritySettings, gate: Gate | None = None,
                          relay: TlsRelay | None = None) -> tuple[dict, str]:
    """FlightServerBase keyword arguments (the auth middleware and, with TLS, the certificate) and the
    location scheme to serve on (`grpc+tls` with TLS, else `grpc+tcp`; plaintext behind `relay`, which
    does the TLS). Build the Gate in the process that serves (a Gate holds locks and file state, so it
    is not shipped between processes)."""
    gate = gate or Gate.from_settings(settings)
    options: dict = {"middleware": {MIDDLEWARE_KEY: FlightAuthMiddlewareFactory(gate, relay=relay)}}
    if not settings.tls_enabled or relay is not None:
        return options, "grpc+tcp"
    options["tls_certificates"] = [flight.CertKeyPair(cert=Path(settings.tls_cert).read_bytes(),
                                                      key=Path(settings.tls_key).read_bytes())]
    return options, "grpc+tls"


def flight_listener(settings: SecuritySettings, host: str, port: int,
                    gate: Gate | None = None) -> tuple[str, dict, TlsRelay | None]:
    """Where the Flight server listens, its keyword arguments, and the TLS relay in front of it when
    the flight listener takes client certificates (then the server is on a loopback port: call
    `relay.start(server.port)` once it is built). Clients connect to grpc+tls://host:port either way."""
    if settings.tls.policy("flight") is None:
        options, scheme = flight_server_options(settings, gate)
        return f"{scheme}://{host}:{port}", options, None
    relay = TlsRelay(settings, host, port)
    options, _ = flight_server_options(settings, gate, relay)
    return "grpc+tcp://127.0.0.1:0", options, relay
