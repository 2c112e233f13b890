"""Ledger entries of the sandbox network, one small frozen dataclass per entry type core keeps,
each with the key it is stored under.

Applying a transaction replaces entries rather than mutating them, so every snapshot a change
points to stays valid. Keys are tuples of strings (entry type first); `entry_xdr` turns keys
and entries into XDR.
"""

from __future__ import annotations

from dataclasses import dataclass

from stellar_sdk import Asset

from obsrvr_sandbox.addresses import balance_address, contract_address, pool_address

Key = tuple[str, ...]

INT64_MAX = 2**63 - 1
# TrustLineFlags
AUTHORIZED_FLAG = 1
AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG = 2
TRUSTLINE_CLAWBACK_ENABLED_FLAG = 4
# AccountFlags
AUTH_REVOCABLE_FLAG = 2
AUTH_CLAWBACK_ENABLED_FLAG = 8
# OfferEntryFlags
PASSIVE_FLAG = 1
POOL_FEE_BPS = 30  # the only constant-product fee the protocol allows


def asset_string(asset: Asset) -> str:
    """SEP-11 canonical form ("native" or "CODE:ISSUER"), as CAP-67 events name assets."""
    return "native" if asset.is_native() else f"{asset.code}:{asset.issuer}"


def account_key(account_id: str) -> Key:
    return ("account", account_id)


def trustline_key(account_id: str, asset: Asset) -> Key:
    return ("trustline", account_id, asset_string(asset))


def pool_share_key(account_id: str, pool_id: bytes) -> Key:
    return ("trustline", account_id, "pool:" + pool_id.hex())


def offer_key(seller: str, offer_id: int) -> Key:
    return ("offer", seller, str(offer_id))


def pool_key(pool_id: bytes) -> Key:
    return ("pool", pool_id.hex())


def claimable_balance_key(balance_id: bytes) -> Key:
    return ("claimable_balance", balance_id.hex())


def contract_balance_key(contract_id: bytes, holder: str) -> Key:
    return ("contract_data", contract_id.hex(), holder)


def contract_instance_key(contract_id: bytes) -> Key:
    return ("contract_data", contract_id.hex(), "instance")


def ttl_key(key_hash: bytes) -> Key:
    return ("ttl", key_hash.hex())


@dataclass(frozen=True, slots=True)
class AccountEntry:
    account_id: str
    balance: int
    seq_num: int
    num_sub_entries: int = 0  # trustlines (pool shares count twice) and offers
    flags: int = 0
    num_sponsoring: int = 0  # reserves this account pays for others' entries (claimable balances)
    buying_liabilities: int = 0  # XLM its offers may receive
    selling_liabilities: int = 0  # XLM its offers may sell
    # Set once the account bumps its sequence number: core then stores the extension v3
    # (seqLedger, seqTime); an account that never sent a transaction has no extension.
    seq_ledger: int | None = None
    seq_time: int = 0
    last_modified: int = 0

    @property
    def key(self) -> Key:
        return account_key(self.account_id)


@dataclass(frozen=True, slots=True)
class TrustlineEntry:
    account_id: str
    asset: Asset
    balance: int
    limit: int
    flags: int = AUTHORIZED_FLAG
    buying_liabilities: int = 0
    selling_liabilities: int = 0
    pool_use_count: int = 0  # pool-share trustlines of this account that hold the asset
    last_modified: int = 0

    @property
    def key(self) -> Key:
        return trustline_key(self.account_id, self.asset)


@dataclass(frozen=True, slots=True)
class PoolShareEntry:
    """A trustline to a liquidity pool's shares."""

    account_id: str
    pool_id: bytes
    balance: int
    limit: int
    flags: int = AUTHORIZED_FLAG
    last_modified: int = 0

    @property
    def key(self) -> Key:
        return pool_share_key(self.account_id, self.pool_id)


@dataclass(frozen=True, slots=True)
class OfferEntry:
    """`amount` of `selling` offered at `price` (n, d): n/d units of `buying` per unit sold."""

    seller: str
    offer_id: int
    selling: Asset
    buying: Asset
    amount: int
    price: tuple[int, int]
    passive: bool = False
    last_modified: int = 0

    @property
    def key(self) -> Key:
        return offer_key(self.seller, self.offer_id)


@dataclass(frozen=True, slots=True)
class PoolEntry:
    """A constant-product liquidity pool; `asset_a` < `asset_b` in the protocol's order."""

    pool_id: bytes
    asset_a: Asset
    asset_b: Asset
    reserve_a: int = 0
    reserve_b: int = 0
    total_shares: int = 0
    share_trustlines: int = 0
    last_modified: int = 0

    @property
    def key(self) -> Key:
        return pool_key(self.pool_id)

    @property
    def address(self) -> str:
        return pool_address(self.pool_id)


@dataclass(frozen=True, slots=True)
class ClaimableBalanceEntry:
    """Claimable by any of `claimants` (unconditionally); `sponsor` pays its reserve."""

    balance_id: bytes
    claimants: tuple[str, ...]
    asset: Asset
    amount: int
    sponsor: str
    clawback: bool = False
    last_modified: int = 0

    @property
    def key(self) -> Key:
        return claimable_balance_key(self.balance_id)

    @property
    def address(self) -> str:
        return balance_address(self.balance_id)


@dataclass(frozen=True, slots=True)
class ContractInstanceEntry:
    """A deployed Stellar Asset Contract: the instance names its asset and admin (the issuer)."""

    contract_id: bytes
    asset: Asset
    last_modified: int = 0

    @property
    def key(self) -> Key:
        return contract_instance_key(self.contract_id)

    @property
    def address(self) -> str:
        return contract_address(self.contract_id)


@dataclass(frozen=True, slots=True)
class ContractBalanceEntry:
    """What a Stellar Asset Contract holds for a contract (C) address, in its own storage."""

    contract_id: bytes
    holder: str
    amount: int
    last_modified: int = 0

    @property
    def key(self) -> Key:
        return contract_balance_key(self.contract_id, self.holder)


@dataclass(frozen=True, slots=True)
class TtlEntry:
    """Until when a contract entry (named by the hash of its key) stays live."""

    key_hash: bytes
    live_until: int
    last_modified: int = 0

    @property
    def key(self) -> Key:
        return ttl_key(self.key_hash)


Entry = (
    AccountEntry
    | TrustlineEntry
    | PoolShareEntry
    | OfferEntry
    | PoolEntry
    | ClaimableBalanceEntry
    | ContractInstanceEntry
    | ContractBalanceEntry
    | TtlEntry
)
