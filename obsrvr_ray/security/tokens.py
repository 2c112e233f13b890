"""JWT bearer tokens: verification with PyJWT, roles read from a configurable claim.

The algorithm is chosen by the key, never by the token: an HS256 token is checked only against
the shared secret, an RS256/ES256 token only against the public key, and `none` or any other
algorithm is refused, so a token cannot downgrade itself (the classic alg-confusion attack).
`exp` and `sub` are required; `nbf` is honoured when present; `iss` and `aud` are required and
checked when configured. A token that carries an `aud` is refused when no audience is configured
(PyJWT's default), because a token minted for another service must not work here.
"""

from __future__ import annotations

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.security.policy import ROLES, Principal
from obsrvr_ray.security.refusals import AuthenticationError
from obsrvr_ray.security.security_settings import JwtSettings

_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "token audience not accepted"),
    (jwt.InvalidIssuerError, "token issuer not accepted"),
    (jwt.MissingRequiredClaimError, "token lacks a required claim"),
    (jwt.InvalidSignatureError, "token signature invalid"),
    (jwt.DecodeError, "malformed token"),
)


def _public_key_algorithm(pem: str) -> tuple[str, object]:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError as exc:
        raise ConfigError(f"jwt.public_key is not a PEM public key: {exc}") from exc
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256", key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256", key
    raise ConfigError("jwt.public_key must be an RSA key (RS256) or a P-256 EC key (ES256)")


def roles_from_claims(claims: dict, path: str) -> frozenset[str]:
    """The known roles named at `path` (dotted for nested claims); a list or a space/comma-separated string."""
    value: object = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, list):
        return frozenset()
    return frozenset(r for r in value if isinstance(r, str) and r in ROLES)


class TokenVerifier:
    def __init__(self, settings: JwtSettings) -> None:
        if not settings.configured:
            raise ConfigError("JWT verification needs jwt.secret (HS256) or jwt.public_key (RS256/ES256)")
        self.settings = settings
        self._keys: dict[str, object] = {}
        if settings.secret:
            self._keys["HS256"] = settings.secret
        if settings.public_key:
            algorithm, key = _public_key_algorithm(settings.public_key)
            self._keys[algorithm] = key
        self._required = ["exp", "sub"] + [c for c, v in (("iss", settings.issuer), ("aud", settings.audience)) if v]

    def verify(self, token: str) -> Principal:
        """The token's principal, or AuthenticationError naming what is wrong with it."""
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError("malformed token") from exc
        key = self._keys.get(algorithm) if isinstance(algorithm, str) else None
        if key is None:
            raise AuthenticationError(f"token algorithm {algorithm!r} not accepted")
        try:
            claims = jwt.decode(token, key, algorithms=[algorithm], issuer=self.settings.issuer,
                                audience=self.settings.audience, leeway=self.settings.leeway,
                                options={"require": self._required})
        except jwt.InvalidTokenError as exc:
            reason = next((text for kind, text in _REASONS if isinstance(exc, kind)), "invalid token")
            raise AuthenticationError(reason) from exc
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise AuthenticationError("token subject invalid")
        return Principal(id=f"jwt:{subject}", roles=roles_from_claims(claims, self.settings.roles_claim), kind="jwt",
                         name=str(claims.get("name") or subject))
