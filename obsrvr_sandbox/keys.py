"""Deterministic keys for the sandbox's actors.

The root account follows stellar-core's convention for a new network: its secret seed is the
network id (SHA-256 of the passphrase), so anyone who knows the passphrase can spend from it.
Every other actor's seed is derived from the generator seed, its role and an index.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from stellar_sdk import Keypair

from obsrvr_ray.network import network_id


@dataclass(frozen=True, eq=False, slots=True)
class Actor:
    """A keypair and its G-address, encoded once (strkey encoding is not free)."""

    keypair: Keypair
    address: str

    @classmethod
    def from_seed(cls, raw_seed: bytes) -> Actor:
        keypair = Keypair.from_raw_ed25519_seed(raw_seed)
        return cls(keypair, keypair.public_key)


def root_actor(passphrase: str) -> Actor:
    return Actor.from_seed(network_id(passphrase))


def derived_actor(seed: int, role: str, index: int = 0) -> Actor:
    return Actor.from_seed(hashlib.sha256(f"obsrvr-ray sandbox/{seed}/{role}/{index}".encode()).digest())
