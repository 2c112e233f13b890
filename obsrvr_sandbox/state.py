"""The sandbox's ledger state and the nested write sets that record its changes.

`EntryTxn` plays the part of stellar-core's LedgerTxn: reads fall through to the parent, writes
stay local until `commit()`, and `changes()` lists them as the STATE / UPDATED / CREATED /
REMOVED records that transaction meta carries. A failed transaction simply drops its write set.
Besides entries, the state keeps the header's id pool (offer ids) and a few indexes (offers by
asset pair and by seller, pool shares by holder), so crossing offers or revoking a trustline
never scans the whole ledger.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import cast

from stellar_sdk import Asset

from obsrvr_sandbox.entries import (
    AccountEntry,
    ClaimableBalanceEntry,
    ContractBalanceEntry,
    ContractInstanceEntry,
    Entry,
    Key,
    OfferEntry,
    PoolEntry,
    PoolShareEntry,
    TrustlineEntry,
    account_key,
    asset_string,
    claimable_balance_key,
    contract_balance_key,
    contract_instance_key,
    offer_key,
    pool_key,
    pool_share_key,
    trustline_key,
)

Group = tuple[str, ...]  # an index entry: ("book", selling, buying), ("seller", G), ("shares", G)


def book_group(selling: Asset, buying: Asset) -> Group:
    return ("book", asset_string(selling), asset_string(buying))


def index_groups(entry: Entry | None) -> tuple[Group, ...]:
    if isinstance(entry, OfferEntry):
        return book_group(entry.selling, entry.buying), ("seller", entry.seller)
    if isinstance(entry, PoolShareEntry):
        return (("shares", entry.account_id),)
    return ()


@dataclass(frozen=True, slots=True)
class LedgerInfo:
    """What operations need to know about the ledger being closed."""

    sequence: int
    close_time: int
    base_fee: int
    base_reserve: int
    network_id: bytes  # contract ids (Stellar Asset Contracts) depend on the network


class LedgerState:
    """The committed entries after the last closed ledger."""

    def __init__(self) -> None:
        self._entries: dict[Key, Entry] = {}
        self._index: dict[Group, set[Key]] = {}
        self.id_pool = 0

    def get(self, key: Key) -> Entry | None:
        return self._entries.get(key)

    def indexed(self, group: Group) -> set[Key]:
        return self._index.get(group, set())

    def _write(self, key: Key, entry: Entry | None) -> None:
        for group in index_groups(self._entries.get(key)):
            self._index[group].discard(key)
        for group in index_groups(entry):
            self._index.setdefault(group, set()).add(key)
        if entry is None:
            self._entries.pop(key, None)
        else:
            self._entries[key] = entry

    def _set_id_pool(self, value: int) -> None:
        self.id_pool = value


class ChangeType(enum.Enum):
    STATE = "state"
    CREATED = "created"
    UPDATED = "updated"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class Change:
    type: ChangeType
    key: Key
    entry: Entry | None  # None for REMOVED


class EntryTxn:
    """Writes over a parent (the committed state or another EntryTxn), in first-touch order."""

    def __init__(self, parent: LedgerState | EntryTxn, ledger_seq: int) -> None:
        self._parent = parent
        self.ledger_seq = ledger_seq
        self._before: dict[Key, Entry | None] = {}
        self._after: dict[Key, Entry | None] = {}
        self._index: dict[Group, set[Key]] = {}
        self._id_pool: int | None = None

    def child(self) -> EntryTxn:
        return EntryTxn(self, self.ledger_seq)

    def get(self, key: Key) -> Entry | None:
        if key in self._after:
            return self._after[key]
        return self._parent.get(key)

    # --- typed reads ---------------------------------------------------------------------

    def account(self, account_id: str) -> AccountEntry | None:
        return cast(AccountEntry | None, self.get(account_key(account_id)))

    def trustline(self, account_id: str, asset: Asset) -> TrustlineEntry | None:
        return cast(TrustlineEntry | None, self.get(trustline_key(account_id, asset)))

    def pool_share(self, account_id: str, pool_id: bytes) -> PoolShareEntry | None:
        return cast(PoolShareEntry | None, self.get(pool_share_key(account_id, pool_id)))

    def offer(self, seller: str, offer_id: int) -> OfferEntry | None:
        return cast(OfferEntry | None, self.get(offer_key(seller, offer_id)))

    def pool(self, pool_id: bytes) -> PoolEntry | None:
        return cast(PoolEntry | None, self.get(pool_key(pool_id)))

    def claimable_balance(self, balance_id: bytes) -> ClaimableBalanceEntry | None:
        return cast(ClaimableBalanceEntry | None, self.get(claimable_balance_key(balance_id)))

    def contract_instance(self, contract_id: bytes) -> ContractInstanceEntry | None:
        return cast(ContractInstanceEntry | None, self.get(contract_instance_key(contract_id)))

    def contract_balance(self, contract_id: bytes, holder: str) -> ContractBalanceEntry | None:
        return cast(ContractBalanceEntry | None, self.get(contract_balance_key(contract_id, holder)))

    def indexed(self, group: Group) -> set[Key]:
        local = self._index.get(group)
        inherited = self._parent.indexed(group)
        return inherited | local if local else inherited

    def _members(self, group: Group) -> list[Entry]:
        """Live entries of an index group, in key order (an entry written here may have left it)."""
        found = []
        for key in sorted(self.indexed(group)):
            entry = self.get(key)
            if entry is not None and group in index_groups(entry):
                found.append(entry)
        return found

    def offers(self, selling: Asset, buying: Asset) -> list[OfferEntry]:
        """The live offers selling `selling` for `buying`, best price first, then oldest."""
        found = cast(list[OfferEntry], self._members(book_group(selling, buying)))
        found.sort(key=lambda offer: (Fraction(*offer.price), offer.offer_id))
        return found

    def offers_of(self, seller: str) -> list[OfferEntry]:
        return cast(list[OfferEntry], self._members(("seller", seller)))

    def pool_shares_of(self, account_id: str) -> list[PoolShareEntry]:
        return cast(list[PoolShareEntry], self._members(("shares", account_id)))

    @property
    def id_pool(self) -> int:
        return self._id_pool if self._id_pool is not None else self._parent.id_pool

    def next_id(self) -> int:
        """A new offer id: the header's id pool, incremented."""
        self._id_pool = self.id_pool + 1
        return self._id_pool

    # --- writes --------------------------------------------------------------------------

    def put(self, entry: Entry) -> Entry:
        """Create or update an entry; it is stamped as modified in this ledger."""
        if entry.last_modified != self.ledger_seq:
            entry = replace(entry, last_modified=self.ledger_seq)
        self._write(entry.key, entry)
        return entry

    def remove(self, key: Key) -> None:
        self._write(key, None)

    def _write(self, key: Key, entry: Entry | None) -> None:
        if key not in self._before:
            self._before[key] = self._parent.get(key)
        self._after[key] = entry
        for group in index_groups(entry):
            self._index.setdefault(group, set()).add(key)

    def _set_id_pool(self, value: int) -> None:
        self._id_pool = value

    def commit(self) -> None:
        for key, entry in self._after.items():
            self._parent._write(key, entry)
        if self._id_pool is not None:
            self._parent._set_id_pool(self._id_pool)
        self._before.clear()
        self._after.clear()
        self._index.clear()
        self._id_pool = None

    def changes(self) -> list[Change]:
        out = []
        for key, before in self._before.items():
            after = self._after[key]
            if before is None:
                if after is not None:
                    out.append(Change(ChangeType.CREATED, key, after))
                continue
            out.append(Change(ChangeType.STATE, key, before))
            if after is None:
                out.append(Change(ChangeType.REMOVED, key, None))
            else:
                out.append(Change(ChangeType.UPDATED, key, after))
        return out
