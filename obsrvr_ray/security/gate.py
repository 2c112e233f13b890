"""The checks every call goes through, in one order, whatever the transport (REST, WebSocket, Flight):

1. the caller's address has tokens left (so floods and guessing are throttled before any work);
2. the credential is valid: an API key (`X-API-Key`, or `Authorization: Bearer ork_…`), a JWT
   (`Authorization: Bearer <jwt>`) or, when neither is sent, a client certificate the TLS handshake
   verified (mutual TLS; `client_certs.py` maps it to roles). A listener requiring certificates
   refuses a call without one whatever else it sends;
3. the credential has tokens left;
4. its roles grant the permission.

Dev mode skips 2-4 (the address limit stays) and answers with an admin principal.

The audit log (logger `obsrvr_ray.security.audit`, one JSON line each) records every refused
credential or permission, and every admitted call that changes something (ingest, control,
administer), with the caller's identity (`key:<id>`, `jwt:<subject>`, `cert:<identity>`), the
permission and the client address. Reads are not logged one by one; they are counted in metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.logs import log_event
from obsrvr_ray.security.apikeys import looks_like_key
from obsrvr_ray.security.client_certs import CertificateMap
from obsrvr_ray.security.clientip import client_address, parse_networks
from obsrvr_ray.security.keystore import KeyStore
from obsrvr_ray.security.policy import ADMIN, ADMINISTER, CONTROL, INGEST, Principal, roles_granting
from obsrvr_ray.security.ratelimit import RateLimiter
from obsrvr_ray.security.refusals import (
    AuthenticationError,
    AuthUnavailable,
    KeyStoreError,
    PermissionDenied,
    RateLimited,
)
from obsrvr_ray.security.security_settings import SecuritySettings
from obsrvr_ray.security.tokens import TokenVerifier

API_KEY_HEADER = "x-api-key"
DEV_PRINCIPAL = Principal(id="dev", roles=frozenset({ADMIN}), kind="dev", name="dev mode (authentication off)")
log = logging.getLogger("obsrvr_ray.security")
audit = logging.getLogger("obsrvr_ray.security.audit")
AUDITED = frozenset({INGEST, CONTROL, ADMINISTER})  # permissions whose admitted calls are logged too


@dataclass(frozen=True)
class Credentials:
    """What a call presented: a bearer token (JWT or API key) and/or an X-API-Key value, and the
    client certificate its TLS handshake verified (DER; only a listener's own TLS layer sets it)."""

    bearer: str | None = None
    api_key: str | None = None
    certificate: bytes | None = None

    @classmethod
    def from_headers(cls, header: Callable[[str], str | None], certificate: bytes | None = None) -> Credentials:
        """From any header lookup (lower-case names): Starlette's headers.get, or Flight's header dict."""
        bearer = None
        authorization = header("authorization")
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                bearer = value.strip()
        api_key = (header(API_KEY_HEADER) or "").strip() or None
        return cls(bearer=bearer, api_key=api_key, certificate=certificate)


class Gate:
    """Authenticates, rate-limits and authorises calls. Thread-safe; build one per process."""

    def __init__(self, settings: SecuritySettings, store: KeyStore | None = None,
                 tokens: TokenVerifier | None = None) -> None:
        certificates = any(settings.tls.policy(listener) for listener in ("https", "flight"))
        if settings.auth_enabled and store is None and tokens is None and not certificates:
            raise ConfigError("authentication is on but nothing can verify a caller: set key_store (API keys), "
                              "jwt.secret or jwt.public_key, and/or tls.client_ca (client certificates)")
        self.settings = settings
        self.store = store
        self.tokens = tokens
        self.certificates = CertificateMap(settings.tls.identities)
        self.trusted_proxies = parse_networks(settings.trusted_proxies)
        self.ip_limiter = (RateLimiter(settings.rate_per_ip, settings.burst_per_ip, settings.max_tracked_clients)
                           if settings.rate_per_ip > 0 else None)
        self.key_limiter = (RateLimiter(settings.rate_per_key, settings.burst_per_key, settings.max_tracked_clients)
                            if settings.rate_per_key > 0 else None)
        if settings.dev_mode:
            log_event(log, "security_dev_mode", logging.WARNING,
                      warning="DEV MODE: AUTHENTICATION IS OFF. Every caller is admin. "
                              "Loopback only; never deploy this.",
                      bind_hosts=list(settings.bind_hosts))
        else:
            log_event(log, "security_configured", **settings.describe())

    @classmethod
    def from_settings(cls, settings: SecuritySettings) -> Gate:
        store = KeyStore(settings.key_store) if settings.key_store else None
        tokens = TokenVerifier(settings.jwt) if settings.jwt.configured else None
        return cls(settings, store, tokens)

    def client_ip(self, peer: str | None, forwarded_for: str | None = None) -> str:
        return client_address(peer, forwarded_for, self.trusted_proxies)

    def authenticate(self, credentials: Credentials) -> Principal:
        """Who presented these credentials (no rate limit, no permission check)."""
        if credentials.bearer and credentials.api_key and credentials.bearer != credentials.api_key:
            raise AuthenticationError("send one credential: Authorization or X-API-Key, not both")
        presented = credentials.bearer or credentials.api_key
        if not presented:
            if credentials.certificate is not None:
                return self.certificates.principal(credentials.certificate)
            raise AuthenticationError("credentials required: Authorization: Bearer <token> or X-API-Key",
                                      presented=False)
        if credentials.api_key or looks_like_key(presented):
            if self.store is None:
                raise AuthenticationError("API keys are not accepted by this server")
            try:
                key = self.store.verify(presented)
            except KeyStoreError as exc:
                log_event(log, "key_store_unreadable", logging.ERROR, error=str(exc))
                raise AuthUnavailable("API keys cannot be checked right now") from exc
            return Principal(id=f"key:{key.key_id}", roles=frozenset(key.roles), kind="api_key", name=key.name)
        if self.tokens is None:
            raise AuthenticationError("bearer tokens (JWT) are not accepted by this server")
        return self.tokens.verify(presented)

    def limit_address(self, client_ip: str | None) -> None:
        """Take a token from the address's bucket, or raise RateLimited (None: address unknown, no limit)."""
        if self.ip_limiter is not None and client_ip is not None:
            wait = self.ip_limiter.take(client_ip)
            if wait:
                raise RateLimited("too many requests from this address", wait)

    def check(self, credentials: Credentials, client_ip: str | None, permission: str, *,
              certificate_required: bool = False) -> Principal:
        """The caller, admitted for `permission`; else AuthenticationError, RateLimited or PermissionDenied.
        `certificate_required`: the listener requires client certificates, so a call that reached it
        without one (another way in: a proxy, a loopback port) is refused whatever it sends."""
        self.limit_address(client_ip)
        if self.settings.dev_mode:
            return DEV_PRINCIPAL
        try:
            if certificate_required and credentials.certificate is None:
                raise AuthenticationError("a client certificate is required: connect with one (mutual TLS) to the "
                                          "listener taking them", presented=False)
            principal = self.authenticate(credentials)
        except AuthenticationError as exc:
            log_event(audit, "auth_refused", logging.WARNING, permission=permission, client=client_ip,
                      credential=_presented(credentials), reason=str(exc))
            raise
        if self.key_limiter is not None:
            wait = self.key_limiter.take(principal.id)
            if wait:
                raise RateLimited("too many requests for this credential", wait)
        if not principal.may(permission):
            log_event(audit, "permission_refused", logging.WARNING, principal=principal.id, permission=permission,
                      client=client_ip, roles=sorted(principal.roles))
            raise PermissionDenied(f"{permission} needs role {' or '.join(roles_granting(permission))}; this caller "
                                   f"has {', '.join(sorted(principal.roles)) or 'no roles'}")
        if permission in AUDITED:
            log_event(audit, "admitted", principal=principal.id, permission=permission, client=client_ip)
        return principal


def _presented(credentials: Credentials) -> str:
    """Which kind of credential a refused call sent (never the secret itself)."""
    if credentials.bearer or credentials.api_key:
        return "api_key" if credentials.api_key or looks_like_key(credentials.bearer or "") else "bearer token"
    return "client certificate" if credentials.certificate is not None else "none"
