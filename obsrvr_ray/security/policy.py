"""Roles, permissions and who may do what: the whole access policy is the POLICY table below.

Routes, the WebSocket and Flight calls name the permission they need; they never test roles
themselves, so changing who may do something is a one-line change here.
"""

from __future__ import annotations

from dataclasses import dataclass

from obsrvr_ray.errors import ConfigError

ADMIN, READER, PROCESSOR = "admin", "reader", "processor"
ROLES = (ADMIN, READER, PROCESSOR)

READ = "read"  # REST queries, lookups, analytics
SUBSCRIBE = "subscribe"  # WebSocket subscriptions
FLIGHT_READ = "flight_read"  # Arrow Flight do_get, list_flights, flight info and schemas
INGEST = "ingest"  # pushing ledgers or rows into the app
CONTROL = "control"  # starting, stopping or moving the live follower
MONITOR = "monitor"  # /health (the follower's full status) and /metrics: operations, not data
ADMINISTER = "administer"  # API key management and anything not classified above

# permission -> the roles granting it besides admin (admin is granted everything).
POLICY: dict[str, frozenset[str]] = {
    READ: frozenset({READER}),
    SUBSCRIBE: frozenset({READER}),
    FLIGHT_READ: frozenset({READER}),
    INGEST: frozenset({PROCESSOR}),
    CONTROL: frozenset({PROCESSOR}),
    # Readers (a Prometheus scraper's key needs no more than reading public ledger data) and
    # processors (the pipeline's operators).
    MONITOR: frozenset({READER, PROCESSOR}),
    ADMINISTER: frozenset(),
}


def check_permission(permission: str) -> str:
    """Fail at wiring time, not at request time, when a route names a permission that does not exist."""
    if permission not in POLICY:
        raise ConfigError(f"unknown permission {permission!r}; known: {', '.join(POLICY)}")
    return permission


def check_roles(roles: object) -> tuple[str, ...]:
    """Roles given for a new key: a non-empty subset of ROLES, in a stable order."""
    if isinstance(roles, str):
        roles = [r.strip() for r in roles.split(",") if r.strip()]
    wanted = set(roles or ())
    unknown = sorted(wanted - set(ROLES))
    if unknown:
        raise ConfigError(f"unknown role(s) {', '.join(unknown)}; known: {', '.join(ROLES)}")
    if not wanted:
        raise ConfigError(f"give at least one role ({', '.join(ROLES)})")
    return tuple(r for r in ROLES if r in wanted)


def roles_granting(permission: str) -> tuple[str, ...]:
    return tuple(r for r in ROLES if r == ADMIN or r in POLICY[permission])


def grants(roles: frozenset[str], permission: str) -> bool:
    return ADMIN in roles or bool(roles & POLICY[permission])


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: `id` is stable per credential (rate limits and logs use it)."""

    id: str  # "key:<key id>", "jwt:<subject>", "cert:<certificate name>" or "dev"
    roles: frozenset[str]
    kind: str  # "api_key", "jwt", "certificate" or "dev"
    name: str = ""

    def may(self, permission: str) -> bool:
        return grants(self.roles, permission)
