"""Why a call was refused. Each error carries the HTTP status it maps to, so the web and Flight
adapters translate it in one place and every transport refuses the same call the same way."""

from __future__ import annotations

from obsrvr_ray.errors import ObsrvrError


class SecurityError(ObsrvrError):
    """A call refused by the security layer; the message is safe to show the caller."""

    status = 400


class AuthenticationError(SecurityError):
    """No credential, or one that is wrong, expired or revoked (HTTP 401)."""

    status = 401

    def __init__(self, message: str, *, presented: bool = True) -> None:
        super().__init__(message)
        self.presented = presented  # False when no credential was sent at all (RFC 6750: no error code then)


class PermissionDenied(SecurityError):
    """A valid caller whose roles do not grant the operation (HTTP 403)."""

    status = 403


class RateLimited(SecurityError):
    """Too many calls from one key or address (HTTP 429)."""

    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthUnavailable(SecurityError):
    """Credentials cannot be checked right now (the key store is unreadable): refuse rather than guess (HTTP 503)."""

    status = 503


class KeyStoreError(ObsrvrError):
    """The key store file is unreadable or malformed."""


class UnknownKey(ObsrvrError):
    """No API key with this id."""


class KeyStateError(ObsrvrError):
    """The operation does not apply to the key as it is (rotating a revoked key)."""
