"""Security settings: one frozen object built from the environment and an optional mapping.

Authentication is on unless `dev_mode` is set, and dev mode is refused unless every address the
servers bind (`bind_hosts`) is loopback, so turning auth off can never expose an open server.
Secrets (the JWT shared secret) never appear in reprs or in `describe()`, the log-safe summary.

Environment variables: `OBSRVR_<FIELD>` for each top-level field (e.g. OBSRVR_DEV_MODE,
OBSRVR_KEY_STORE, OBSRVR_CORS_ORIGINS=a,b) and `OBSRVR_JWT_<FIELD>` for the JWT ones (e.g.
OBSRVR_JWT_SECRET_FILE, OBSRVR_JWT_PUBLIC_KEY_FILE, OBSRVR_JWT_AUDIENCE), and `OBSRVR_TLS_<FIELD>` for
mutual TLS's client_ca, client_cert and crl (per-listener overrides and identities: config only). A mapping given to
`load` (the app's config or flags, same field names, `jwt` nested) overrides the environment:
what the operator wrote explicitly wins over what the process inherited. A bad value is told
under the name it was given: the key, or the environment variable.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from obsrvr_ray.security.policy import check_roles
from obsrvr_ray.settings_model import Flag, Settings, one_of, translated

MIN_HS256_SECRET = 32  # bytes: RFC 7518 §3.2 asks for a key at least as long as the hash


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IPs (127.0.0.0/8, ::1); False for wildcards and other names."""
    host = host.strip().strip("[]")
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _path(raw: object) -> str | None:
    if raw is not None and not isinstance(raw, str | os.PathLike):
        raise ValueError(f"expected text, got {raw!r}")
    return str(raw) if raw not in (None, "") else None


def _strings(raw: object) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple):
        raise ValueError(f"expected a list or comma-separated text, got {raw!r}")
    return tuple(str(v).strip() for v in items if str(v).strip())


def _origins(origins: tuple[str, ...]) -> tuple[str, ...]:
    for origin in origins:
        parts = urlsplit(origin)
        if origin != "*" and (parts.scheme not in ("http", "https") or not parts.netloc
                              or parts.path or parts.query or parts.fragment):
            raise ValueError(f"{origin!r} is not an origin like https://app.example[:port]")
    return origins


def _networks(proxies: tuple[str, ...]) -> tuple[str, ...]:
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ValueError(f"{proxy!r} is not an address or CIDR") from None
    return proxies


OptionalText = Annotated[str | None, BeforeValidator(_path)]
Strings = Annotated[tuple[str, ...], BeforeValidator(_strings)]
Rate = Annotated[float, Field(ge=0)]  # requests/s; 0 turns the limit off
Count = Annotated[int, Field(ge=1)]


class JwtSettings(Settings):
    """Bearer JWTs: HS256 with `secret`, and/or RS256 or ES256 with `public_key` (PEM; its type
    picks the algorithm). `secret_file` / `public_key_file` name files holding them, so a config
    file never holds the secret itself."""

    secret: OptionalText = Field(None, repr=False)
    secret_file: OptionalText = None
    public_key: OptionalText = Field(None, repr=False)
    public_key_file: OptionalText = None
    issuer: OptionalText = None
    audience: OptionalText = None
    roles_claim: str = "roles"  # a claim name, or a dotted path such as realm_access.roles
    leeway: Annotated[float, Field(ge=0)] = 30.0  # seconds of clock skew tolerated on exp and nbf

    @model_validator(mode="before")
    @classmethod
    def _read_files(cls, values: Any) -> Any:
        """The secret and the public key from their files, unless given themselves."""
        if not isinstance(values, Mapping):
            return values
        values = dict(values)
        for name, target in (("secret_file", "secret"), ("public_key_file", "public_key")):
            path = values.get(name)
            if path not in (None, "") and values.get(target) is None:
                try:
                    values[target] = Path(path).read_text().strip()
                except OSError as exc:
                    raise ValueError(f"{name}: cannot read {path}: {exc}") from None
        return values

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, secret: str | None) -> str | None:
        if secret is not None and len(secret.encode()) < MIN_HS256_SECRET:
            raise ValueError(f"must be at least {MIN_HS256_SECRET} bytes for HS256")
        return secret

    @field_validator("roles_claim")
    @classmethod
    def _names_a_claim(cls, claim: str) -> str:
        if not claim:
            raise ValueError("must name a claim")
        return claim

    @property
    def configured(self) -> bool:
        return bool(self.secret or self.public_key)


REQUIRED, OPTIONAL = "required", "optional"
LISTENERS = ("https", "flight")


def _identities(raw: object) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"expected a mapping of certificate identity -> roles, got {raw!r}")
    return {str(name): check_roles(roles) for name, roles in raw.items()}


class ListenerTls(Settings):
    """One listener's client-certificate settings; unset ones come from the `tls` section itself."""

    client_ca: OptionalText = None  # PEM CA certificate(s) client certificates must chain to
    client_cert: Annotated[str | None, one_of((REQUIRED, OPTIONAL))] = None
    crl: OptionalText = None  # PEM CRL(s) of that CA: revoked certificates are refused at the handshake


@dataclass(frozen=True)
class ClientCertPolicy:
    """What one listener asks of client certificates (mutual TLS)."""

    client_ca: str
    required: bool  # else optional: callers without a certificate use API keys or JWTs
    crl: str | None


class TlsSettings(ListenerTls):
    """Mutual TLS: `client_ca`, `client_cert` (required/optional, default required) and `crl` for both
    listeners, each overridable under `https` or `flight`; `identities` maps a certificate's URI SAN
    (a SPIFFE ID), `dns:<name>` SAN or subject (RFC 4514, "CN=dash,O=Example") to roles, the same
    roles API keys and JWTs carry. A verified certificate that maps to nothing has no rights."""

    https: ListenerTls = Field(default_factory=ListenerTls)
    flight: ListenerTls = Field(default_factory=ListenerTls)
    identities: Annotated[dict[str, tuple[str, ...]], translated(_identities)] = Field(default_factory=dict)

    def policy(self, listener: str) -> ClientCertPolicy | None:
        """The listener's client-certificate policy, None when it takes no client certificates."""
        own: ListenerTls = getattr(self, listener)
        ca = own.client_ca or self.client_ca
        if not ca:
            return None
        return ClientCertPolicy(client_ca=ca, required=(own.client_cert or self.client_cert or REQUIRED) == REQUIRED,
                                crl=own.crl or self.crl)


class SecuritySettings(Settings):
    dev_mode: Flag = False  # authentication off; only allowed when every bind host is loopback
    bind_hosts: Strings = ()  # the addresses the HTTP and Flight servers listen on
    key_store: OptionalText = None  # JSON file of hashed API keys
    jwt: JwtSettings = Field(default_factory=JwtSettings)
    tls_cert: OptionalText = None  # PEM certificate (chain) for HTTPS and Flight
    tls_key: OptionalText = Field(None, repr=False)  # path only, but nobody needs it in a log line
    tls: TlsSettings = Field(default_factory=TlsSettings)  # mutual TLS: client certificates
    # exact origins allowed by browsers ("https://app.example"); none by default
    cors_origins: Annotated[Strings, AfterValidator(_origins)] = ()
    rate_per_key: Rate = 50.0  # requests/s per API key or JWT subject
    burst_per_key: Count = 100
    rate_per_ip: Rate = 100.0  # requests/s per client address
    burst_per_ip: Count = 200
    max_tracked_clients: Count = 100_000  # buckets kept per limiter (least recently seen dropped first)
    # addresses/CIDRs whose X-Forwarded-For is believed
    trusted_proxies: Annotated[Strings, AfterValidator(_networks)] = ()
    hsts_max_age: int = 31_536_000
    # /metrics without credentials, for a Prometheus that scrapes over a private network and
    # cannot hold a key. Off by default: the metrics describe the service's internals and traffic.
    public_metrics: Flag = False

    @model_validator(mode="after")
    def _safe(self) -> SecuritySettings:
        if self.dev_mode:
            if not self.bind_hosts:
                raise ValueError("dev mode turns authentication off and is allowed on loopback only: "
                                 "give bind_hosts, the addresses the servers listen on")
            exposed = [h for h in self.bind_hosts if not is_loopback(h)]
            if exposed:
                raise ValueError(f"dev mode refused: it turns authentication off, and the servers would listen "
                                 f"on non-loopback address(es) {', '.join(exposed)}; bind to 127.0.0.1 or drop --dev")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        for listener in LISTENERS:
            policy = self.tls.policy(listener)
            if policy is not None and not self.tls_enabled:
                raise ValueError(f"tls.client_ca ({listener}) needs the server's own certificate: set tls_cert "
                                 "and tls_key")
            for path in (policy.client_ca, policy.crl) if policy else ():
                if path and not Path(path).is_file():
                    raise ValueError(f"tls ({listener}): {path} is not a readable file")
        return self

    @property
    def auth_enabled(self) -> bool:
        return not self.dev_mode

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    def describe(self) -> dict:
        """A summary safe to log: which mechanisms are on, never a secret."""
        return {
            "auth_enabled": self.auth_enabled, "dev_mode": self.dev_mode, "bind_hosts": list(self.bind_hosts),
            "api_keys": self.key_store, "jwt_hs256": bool(self.jwt.secret), "jwt_public_key": bool(self.jwt.public_key),
            "jwt_issuer": self.jwt.issuer, "jwt_audience": self.jwt.audience, "jwt_roles_claim": self.jwt.roles_claim,
            "tls": self.tls_enabled, **self._client_certs(), "cors_origins": list(self.cors_origins),
            "rate_per_key": self.rate_per_key, "burst_per_key": self.burst_per_key,
            "rate_per_ip": self.rate_per_ip, "burst_per_ip": self.burst_per_ip,
            "trusted_proxies": list(self.trusted_proxies), "public_metrics": self.public_metrics,
        }

    def _client_certs(self) -> dict:
        out = {}
        for listener in LISTENERS:
            policy = self.tls.policy(listener)
            out[f"client_certs_{listener}"] = (None if policy is None
                                                 else REQUIRED if policy.required else OPTIONAL)
        out["client_cert_identities"] = len(self.tls.identities)
        return out

    @classmethod
    def load(cls, config: Mapping | None = None, env: Mapping[str, str] | None = None, *,
             prefix: str = "") -> SecuritySettings:
        """Settings from `env` (default os.environ), overridden by `config`; unknown config keys are
        errors, named with `prefix` (where `config` sits in the app's settings)."""
        env = os.environ if env is None else env
        values, names = dict(config or {}), {}
        sections = [(values, cls, "")]
        for section, model in (("jwt", JwtSettings), ("tls", ListenerTls)):  # tls: only its top-level fields
            given = values.get(section) or {}
            if isinstance(given, Mapping):  # else the model tells it is not a mapping
                values[section] = given = dict(given)
                sections.append((given, model, f"{section}."))
        for given, model, section in sections:
            for name in model.model_fields:
                env_name = f"OBSRVR_{section.replace('.', '_').upper()}{name.upper()}"
                if name not in ("jwt", "tls") and name not in given and env.get(env_name) not in (None, ""):
                    given[name] = env[env_name]
                    names[section + name] = env_name
        return cls.check(values, names=names, prefix=prefix)
