"""Network passphrases and the network id that every transaction hash commits to."""

from __future__ import annotations

import hashlib
from functools import cache

PASSPHRASES: dict[str, str] = {
    "pubnet": "Public Global Stellar Network ; September 2015",
    "testnet": "Test SDF Network ; September 2015",
    "futurenet": "Test SDF Future Network ; October 2022",
    "standalone": "Standalone Network ; February 2017",
    "sandbox": "Local Sandbox Stellar Network ; September 2022",
}

PUBNET = PASSPHRASES["pubnet"]
SANDBOX = PASSPHRASES["sandbox"]


def resolve_passphrase(name_or_passphrase: str) -> str:
    """Accept a short network name (pubnet, testnet, ...) or a full passphrase."""
    return PASSPHRASES.get(name_or_passphrase.lower(), name_or_passphrase)


def resolve_network(given: str | None, declared: str | None = None) -> str:
    """The network a run hashes and checks against, decided here for every command: what the
    operator named (--network or a `network` setting, a name or a passphrase) wins over what the
    source declares, and a source that declares none (an etl file, a bare lake) is pubnet's."""
    if given:
        return resolve_passphrase(given)
    return declared or PUBNET


@cache
def network_id(passphrase: str) -> bytes:
    return hashlib.sha256(passphrase.encode()).digest()


def network_name(passphrase: str) -> str:
    """Short name for a known passphrase, else the passphrase itself (for logs and summaries)."""
    for name, known in PASSPHRASES.items():
        if known == passphrase:
            return name
    return passphrase
