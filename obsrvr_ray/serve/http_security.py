"""The security layer on FastAPI/Starlette: the Guard dependency, security headers, CORS and the
admin API for keys. Built on `obsrvr_ray.security.gate.Gate`, so REST, WebSocket and Flight
(`flight_auth.py`) refuse the same calls the same way.

Credentials: `Authorization: Bearer <JWT or API key>` or `X-API-Key: <API key>`, or, on the
mutual-TLS listener (`mtls.py`), a client certificate, used when no header credential is sent. Browsers cannot
set headers on a WebSocket, so a WebSocket client may instead offer two subprotocols,
`bearer` and `bearer.<token>` (token = JWT or API key; both are valid subprotocol tokens). This
keeps the credential out of URLs, which proxies and access logs record. The server echoes
`bearer` (never the token): accept with `websocket.accept(subprotocol=websocket_subprotocol(ws))`,
or browsers drop the connection.

In the OpenAPI document, each guarded route's security requirement lists the roles that may
call it (OpenAPI 3.1 allows role names there for non-OAuth schemes); a route without a security
requirement needs no credentials. Clients can read who may call what, and the tests walk it.

Refusals: 401 with `WWW-Authenticate: Bearer` (missing, wrong, expired, revoked), 403
(under-privileged), 429 with `Retry-After`, 503 (the key store is unreadable). A WebSocket
handshake is refused with the same HTTP status (ASGI denial-response extension, which uvicorn
provides) or, where the server lacks it, closed before acceptance with 1008 (1013 when rate-limited).
uvicorn's websockets-sansio protocol then logs a spurious "ASGI callable returned without
completing handshake" per refusal (Kludex/uvicorn PR 3138); the client still gets the right status.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Security, WebSocket
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.security.gate import Credentials, Gate
from obsrvr_ray.security.keystore import KeyStore, utcnow
from obsrvr_ray.security.policy import ADMINISTER, Principal, check_permission, roles_granting
from obsrvr_ray.security.refusals import KeyStateError, KeyStoreError, RateLimited, SecurityError, UnknownKey
from obsrvr_ray.security.security_settings import SecuritySettings
from obsrvr_ray.serve.mtls import client_certificate

API_KEY_HEADER = "X-API-Key"
WS_SUBPROTOCOL = "bearer"
WS_TOKEN_PREFIX = "bearer."
REALM = "obsrvr-ray"

_bearer = HTTPBearer(auto_error=False, description="a JWT, or an API key (ork_…)")
_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="an API key (ork_…)")


def error_headers(exc: SecurityError) -> dict[str, str]:
    """RFC 6750 challenge on 401 (with error=invalid_token when a credential was sent), Retry-After on 429."""
    if exc.status == HTTPStatus.UNAUTHORIZED:
        challenge = f'Bearer realm="{REALM}"'
        if getattr(exc, "presented", True):
            description = str(exc).replace('"', "'")
            challenge += f', error="invalid_token", error_description="{description}"'
        return {"WWW-Authenticate": challenge}
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return {}


def websocket_subprotocol(websocket: WebSocket) -> str | None:
    """The subprotocol to accept with: `bearer` when the client authenticated that way, else None."""
    return WS_SUBPROTOCOL if WS_SUBPROTOCOL in websocket.scope.get("subprotocols", ()) else None


class Guard:
    """Authentication and authorisation for the app's routes and WebSocket (api.py's `RouteGuard`)."""

    def __init__(self, settings: SecuritySettings, gate: Gate | None = None) -> None:
        self.settings = settings
        self.gate = gate or Gate.from_settings(settings)
        policy = settings.tls.policy("https")
        # Then a call that did not come through the mutual-TLS listener (Serve's proxy) is refused.
        self.certificate_required = bool(policy and policy.required)

    @property
    def public_metrics(self) -> bool:
        return self.settings.public_metrics

    @property
    def auth_enabled(self) -> bool:
        return self.settings.auth_enabled

    def client_ip(self, conn: Request | WebSocket) -> str:
        """The caller's address; X-Forwarded-For only when the peer is a trusted proxy."""
        return self.gate.client_ip(conn.client.host if conn.client else None, conn.headers.get("x-forwarded-for"))

    def require(self, permission: str) -> Callable[..., Awaitable[Principal]]:
        """A dependency admitting callers granted `permission`; returns the caller (also on request.state)."""
        check_permission(permission)
        roles = list(roles_granting(permission))  # shown as the scopes of the route's OpenAPI security requirement

        async def authorized(request: Request,
                             bearer: HTTPAuthorizationCredentials | None = Security(_bearer, scopes=roles),
                             api_key: str | None = Security(_api_key, scopes=roles)) -> Principal:
            credentials = Credentials(bearer=bearer.credentials if bearer else None, api_key=api_key or None,
                                      certificate=client_certificate(request.scope))
            try:
                principal = self.gate.check(credentials, self.client_ip(request), permission,
                                            certificate_required=self.certificate_required)
            except SecurityError as exc:
                raise HTTPException(exc.status, detail=str(exc), headers=error_headers(exc)) from exc
            request.state.principal = principal
            return principal

        return authorized

    async def websocket(self, websocket: WebSocket, permission: str) -> Principal | None:
        """The caller of a WebSocket handshake, or None after refusing it (the handler then just returns)."""
        check_permission(permission)
        certificate = client_certificate(websocket.scope)
        credentials = Credentials.from_headers(websocket.headers.get, certificate)
        if credentials.bearer is None and credentials.api_key is None:
            offered = [p for p in websocket.scope.get("subprotocols", ()) if p.startswith(WS_TOKEN_PREFIX)]
            if offered:
                credentials = Credentials(bearer=offered[0][len(WS_TOKEN_PREFIX):], certificate=certificate)
        try:
            principal = self.gate.check(credentials, self.client_ip(websocket), permission,
                                        certificate_required=self.certificate_required)
        except SecurityError as exc:
            if "websocket.http.response" in (websocket.scope.get("extensions") or {}):
                await websocket.send_denial_response(
                    JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=error_headers(exc)))
            else:
                await websocket.close(code=1013 if isinstance(exc, RateLimited) else 1008, reason=str(exc)[:120])
            return None
        websocket.state.principal = principal
        return principal


# ---- security headers and CORS ---------------------------------------------------------------
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# FastAPI's /docs (Swagger UI) and /redoc load their scripts, styles and fonts from CDNs and run
# an inline start-up script; only those pages get this policy.
DOCS_CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
            "font-src https://fonts.gstatic.com; "
            "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
            "connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response (a route's own values are kept).

    HSTS is sent when the server terminates TLS (`tls=True`) or the request arrived over HTTPS;
    Cache-Control no-store keeps authenticated answers (and new keys) out of shared caches.
    """

    def __init__(self, app: ASGIApp, *, tls: bool = False, hsts_max_age: int = 31_536_000,
                 docs_paths: frozenset[str] = DOCS_PATHS) -> None:
        self.app = app
        self.tls = tls
        self.hsts = f"max-age={hsts_max_age}; includeSubDomains"
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, root = scope.get("path", ""), scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        csp = DOCS_CSP if path in self.docs_paths else API_CSP
        https = self.tls or scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", csp)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("Cache-Control", "no-store")
                if https:
                    headers.setdefault("Strict-Transport-Security", self.hsts)
            await send(message)

        await self.app(scope, receive, send_with_headers)


MAX_HEADER_BYTES = 16 * 1024  # all of a request's header lines
MAX_HEADER_LINE = 8 * 1024  # one header line


class HeaderLimitMiddleware:
    """Refuses requests (and WebSocket handshakes) whose headers exceed `max_total` bytes in all
    or `max_line` in one line, with 431 Request Header Fields Too Large.

    Ray Serve's proxy (uvicorn with httptools) sets no limit of its own and Ray 2.60 offers no
    setting for one (HTTPOptions.middlewares was removed), so the app enforces it: nothing it
    does then depends on headers of any size. A standalone uvicorn with `http="h11"` can also
    stop them while reading (`h11_max_incomplete_event_size`).
    """

    def __init__(self, app: ASGIApp, *, max_total: int = MAX_HEADER_BYTES, max_line: int = MAX_HEADER_LINE) -> None:
        self.app = app
        self.max_total = max_total
        self.max_line = max_line

    def _refusal(self, scope: Scope) -> str | None:
        lines = [len(name) + len(value) + 4 for name, value in scope.get("headers") or ()]  # "name: value\r\n"
        if sum(lines) > self.max_total:
            return f"request headers too large: {sum(lines)} bytes, at most {self.max_total} are accepted"
        if any(n > self.max_line for n in lines):
            return f"a request header line is too large: at most {self.max_line} bytes are accepted"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope) if scope["type"] in ("http", "websocket") else None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        response = JSONResponse({"detail": refusal}, status_code=431)
        if scope["type"] == "http":
            await response(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await websocket.send_denial_response(response)
        else:
            await websocket.close(code=1008, reason=refusal[:120])


def install_security(app: FastAPI, settings: SecuritySettings) -> FastAPI:
    """Add CORS (when origins are configured), the header size limit and the security headers;
    call before the app serves.

    The headers middleware goes outermost so CORS preflights and refusals get the headers too.
    Credentials travel in headers, never cookies, so CORS does not allow credentials.
    """
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", API_KEY_HEADER, "Content-Type"],
                           expose_headers=["Retry-After", "WWW-Authenticate"], max_age=600)
    app.add_middleware(HeaderLimitMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, tls=settings.tls_enabled, hsts_max_age=settings.hsts_max_age)
    return app


def build_guard(settings: SecuritySettings) -> tuple[Guard, tuple[APIRouter, ...], Callable[[FastAPI], FastAPI]]:
    """Everything the app mounts, built in the serving process: the Guard for create_app, the admin
    router (when there is a key store) and the function adding CORS and security headers to the app."""
    if not isinstance(settings, SecuritySettings):
        raise ConfigError("security settings are required (dev mode too: "
                          "SecuritySettings(dev_mode=True, bind_hosts=(<http host>, <flight host>)))")
    guard = Guard(settings)
    routers = (admin_router(guard),) if guard.gate.store is not None else ()
    return guard, routers, lambda app: install_security(app, settings)


# ---- admin API for keys ----------------------------------------------------------------------
class KeyCreate(BaseModel):
    roles: list[str] = Field(min_length=1, description="admin, reader and/or processor")
    name: str = Field("", max_length=200, description="who or what the key is for")
    expires_days: float | None = Field(None, gt=0, le=3650, description="days until it expires (default never)")


class KeyInfo(BaseModel):
    key_id: str
    name: str
    prefix: str
    roles: list[str]
    state: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    rotated_at: str | None
    last_used_at: str | None


class KeySecret(BaseModel):
    key: KeyInfo
    secret: str = Field(description="the API key itself; shown only in this response")


def _key_info(record) -> KeyInfo:
    return KeyInfo(**record.public(utcnow()))


def _key_call(operation: Callable[[], object]) -> object:
    """The key store's answer, its refusals as HTTP errors (one status per cause)."""
    try:
        return operation()
    except UnknownKey as exc:
        raise HTTPException(404, detail=str(exc)) from exc
    except KeyStateError as exc:
        raise HTTPException(409, detail=str(exc)) from exc
    except KeyStoreError as exc:
        raise HTTPException(503, detail=str(exc)) from exc
    except ConfigError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    except OSError as exc:  # a key store mounted read-only (a Kubernetes Secret): manage keys with the CLI
        raise HTTPException(503, detail=f"the key store cannot be written here: {exc.strerror or exc}") from exc


def admin_router(guard: Guard) -> APIRouter:
    """`/admin/keys`: create, list, revoke and rotate API keys (admin role). Sync handlers: file I/O runs in threads."""
    store: KeyStore | None = guard.gate.store
    if store is None:
        raise ConfigError("the admin key API needs a key store (security setting key_store)")
    router = APIRouter(prefix="/admin/keys", tags=["admin"], dependencies=[Depends(guard.require(ADMINISTER))])

    @router.post("", status_code=201, response_model=KeySecret)
    def create_key(body: KeyCreate) -> KeySecret:
        """A new key; the response is the only time its secret is shown."""
        expires_at = utcnow() + dt.timedelta(days=body.expires_days) if body.expires_days else None
        record, secret = _key_call(lambda: store.create(body.roles, name=body.name, expires_at=expires_at))
        return KeySecret(key=_key_info(record), secret=secret)

    @router.get("", response_model=list[KeyInfo])
    def list_keys() -> list[KeyInfo]:
        """Every key with its state and last use; never a secret or a hash."""
        return [_key_info(k) for k in _key_call(store.list)]

    @router.post("/{key_id}/revoke", response_model=KeyInfo)
    def revoke_key(key_id: str) -> KeyInfo:
        return _key_info(_key_call(lambda: store.revoke(key_id)))

    @router.post("/{key_id}/rotate", response_model=KeySecret)
    def rotate_key(key_id: str) -> KeySecret:
        """A new secret for the key (same id and roles); the old secret stops working at once."""
        record, secret = _key_call(lambda: store.rotate(key_id))
        return KeySecret(key=_key_info(record), secret=secret)

    return router
