"""The caller's address, for per-address rate limits.

Behind a load balancer or ingress every request comes from the proxy, so one bucket would
throttle everyone. X-Forwarded-For is believed only when the direct peer is a configured trusted
proxy, and then the client is the right-most address that is not itself a trusted proxy: the
left-most entries are whatever the client chose to send and must not be trusted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import unquote

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The address to account a call to: the peer, or what trusted proxies say the client was."""
    peer = peer or "unknown"
    if not forwarded_for or not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def grpc_peer_host(peer: str | bytes | None) -> str | None:
    """The host of a gRPC peer string: `ipv4:1.2.3.4:5`, `ipv6:[::1]:5` (None for unix sockets and unknowns)."""
    if isinstance(peer, bytes):
        peer = peer.decode(errors="replace")
    if not peer:
        return None
    kind, _, rest = peer.partition(":")
    rest = unquote(rest)  # newer gRPC percent-encodes the brackets: ipv6:%5B::1%5D:5
    if kind == "ipv4":
        return rest.rpartition(":")[0] or None
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]") or None
    return None
