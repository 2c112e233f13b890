"""Security settings: one frozen object built from the environment and an optional mapping.

Authentication is on unless `dev_mode` is set, and dev mode is refused unless every address the
servers bind (`bind_hosts`) is loopback, so turning auth off can never expose an open server.
Secrets (the JWT shared secret) never appear in reprs or in `describe()`, the log-safe summary.

Environment variables: `OBSRVR_<FIELD>` for each top-level field (e.g. OBSRVR_DEV_MODE,
OBSRVR_KEY_STORE, OBSRVR_CORS_ORIGINS=a,b) and `OBSRVR_JWT_<FIELD>` for the JWT ones (e.g.
OBSRVR_JWT_SECRET_FILE, OBSRVR_JWT_PUBLIC_KEY_FILE, OBSRVR_JWT_AUDIENCE). A mapping given to
`load` (the app's config or flags, same field names, `jwt` nested) overrides the environment:
what the operator wrote explicitly wins over what the process inherited.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from obsrvr_ray.errors import ConfigError

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


@dataclass(frozen=True)
class JwtSettings:
    """Bearer JWTs: HS256 with `secret`, and/or RS256 or ES256 with `public_key` (PEM; its type picks the algorithm)."""

    secret: str | None = field(default=None, repr=False)
    public_key: str | None = field(default=None, repr=False)
    issuer: str | None = None
    audience: str | None = None
    roles_claim: str = "roles"  # a claim name, or a dotted path such as realm_access.roles
    leeway: float = 30.0  # seconds of clock skew tolerated on exp and nbf

    def __post_init__(self) -> None:
        if self.secret is not None and len(self.secret.encode()) < MIN_HS256_SECRET:
            raise ConfigError(f"jwt.secret must be at least {MIN_HS256_SECRET} bytes for HS256")
        if not self.roles_claim:
            raise ConfigError("jwt.roles_claim must name a claim")
        if self.leeway < 0:
            raise ConfigError("jwt.leeway must be >= 0")

    @property
    def configured(self) -> bool:
        return bool(self.secret or self.public_key)


@dataclass(frozen=True)
class SecuritySettings:
    dev_mode: bool = False  # authentication off; only allowed when every bind host is loopback
    bind_hosts: tuple[str, ...] = ()  # the addresses the HTTP and Flight servers listen on
    key_store: str | None = None  # JSON file of hashed API keys
    jwt: JwtSettings = field(default_factory=JwtSettings)
    tls_cert: str | None = None  # PEM certificate (chain) for HTTPS and Flight
    tls_key: str | None = field(default=None, repr=False)  # path only, but nobody needs it in a log line
    cors_origins: tuple[str, ...] = ()  # exact origins allowed by browsers ("https://app.example"); none by default
    rate_per_key: float = 50.0  # requests/s per API key or JWT subject; 0 turns the limit off
    burst_per_key: int = 100
    rate_per_ip: float = 100.0  # requests/s per client address; 0 turns the limit off
    burst_per_ip: int = 200
    max_tracked_clients: int = 100_000  # buckets kept per limiter (least recently seen dropped first)
    trusted_proxies: tuple[str, ...] = ()  # addresses/CIDRs whose X-Forwarded-For is believed
    hsts_max_age: int = 31_536_000
    # /metrics without credentials, for a Prometheus that scrapes over a private network and
    # cannot hold a key. Off by default: the metrics describe the service's internals and traffic.
    public_metrics: bool = False

    def __post_init__(self) -> None:
        if self.dev_mode:
            if not self.bind_hosts:
                raise ConfigError("dev mode turns authentication off and is allowed on loopback only: "
                                  "give bind_hosts, the addresses the servers listen on")
            exposed = [h for h in self.bind_hosts if not is_loopback(h)]
            if exposed:
                raise ConfigError(f"dev mode refused: it turns authentication off, and the servers would listen "
                                  f"on non-loopback address(es) {', '.join(exposed)}; bind to 127.0.0.1 or drop --dev")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key go together: give both or neither")
        for name in ("rate_per_key", "rate_per_ip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        for name in ("burst_per_key", "burst_per_ip", "max_tracked_clients"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        for origin in self.cors_origins:
            parts = urlsplit(origin)
            if origin != "*" and (parts.scheme not in ("http", "https") or not parts.netloc
                                  or parts.path or parts.query or parts.fragment):
                raise ConfigError(f"cors_origins: {origin!r} is not an origin like https://app.example[:port]")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as exc:
                raise ConfigError(f"trusted_proxies: {proxy!r} is not an address or CIDR") from exc

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
            "tls": self.tls_enabled, "cors_origins": list(self.cors_origins),
            "rate_per_key": self.rate_per_key, "burst_per_key": self.burst_per_key,
            "rate_per_ip": self.rate_per_ip, "burst_per_ip": self.burst_per_ip,
            "trusted_proxies": list(self.trusted_proxies), "public_metrics": self.public_metrics,
        }

    @classmethod
    def load(cls, config: Mapping | None = None, env: Mapping[str, str] | None = None) -> SecuritySettings:
        """Settings from `env` (default os.environ), overridden by `config`; unknown config keys are errors."""
        env = os.environ if env is None else env
        config = dict(config or {})
        jwt_config = dict(config.pop("jwt", None) or {})
        top = _collect(_FIELDS, config, env, "OBSRVR_", "")
        jwt = _collect(_JWT_FIELDS, jwt_config, env, "OBSRVR_JWT_", "jwt.")
        for name, target in (("secret_file", "secret"), ("public_key_file", "public_key")):
            path = jwt.pop(name, None)
            if path is not None and target not in jwt:
                try:
                    jwt[target] = Path(path).read_text().strip()
                except OSError as exc:
                    raise ConfigError(f"jwt.{name}: cannot read {path}: {exc}") from exc
        return cls(**top, jwt=JwtSettings(**jwt))


def _bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _number(kind: type) -> Callable[[object, str], object]:
    def convert(value: object, name: str) -> object:
        try:
            return kind(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name}: expected a number, got {value!r}") from exc

    return convert


def _text(value: object, name: str) -> str | None:
    if value is not None and not isinstance(value, str | os.PathLike):
        raise ConfigError(f"{name}: expected text, got {value!r}")
    return str(value) if value not in (None, "") else None


def _strings(value: object, name: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigError(f"{name}: expected a list or comma-separated text, got {value!r}")
    return tuple(str(v).strip() for v in items if str(v).strip())


_FIELDS = {"dev_mode": _bool, "bind_hosts": _strings, "key_store": _text, "tls_cert": _text, "tls_key": _text,
           "cors_origins": _strings, "rate_per_key": _number(float), "burst_per_key": _number(int),
           "rate_per_ip": _number(float), "burst_per_ip": _number(int), "max_tracked_clients": _number(int),
           "trusted_proxies": _strings, "hsts_max_age": _number(int), "public_metrics": _bool}
_JWT_FIELDS = {"secret": _text, "secret_file": _text, "public_key": _text, "public_key_file": _text,
               "issuer": _text, "audience": _text, "roles_claim": _text, "leeway": _number(float)}


def _collect(known: Mapping[str, Callable[[object, str], object]], config: Mapping, env: Mapping[str, str],
             env_prefix: str, label: str) -> dict:
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ConfigError(f"unknown security setting(s) {', '.join(label + k for k in unknown)}; "
                          f"known: {', '.join(label + k for k in known)}")
    values = {}
    for name, convert in known.items():
        env_name = env_prefix + name.upper()
        if name in config:
            values[name] = convert(config[name], label + name)
        elif env.get(env_name) not in (None, ""):
            values[name] = convert(env[env_name], env_name)
    return values
