"""Ledger entries of the sandbox network and the nested write sets that record their changes.

Entries are small frozen dataclasses: applying a transaction replaces them, so every snapshot a
change points to stays valid. `EntryTxn` plays the part of stellar-core's LedgerTxn: reads fall
through to the parent, writes stay local until `commit()`, and `changes()` lists them as the
STATE / UPDATED / CREATED / REMOVED records that transaction meta carries. A failed transaction
simply drops its write set. Only here are entries turned into XDR.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import cast

from stellar_sdk import Asset, Keypair
from stellar_sdk import xdr as X

from obsrvr_ray.sandbox.encoded import Encoded

Key = tuple[str, ...]

AUTHORIZED_FLAG = 1  # TrustLineFlags.AUTHORIZED_FLAG
INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class LedgerInfo:
    """What operations need to know about the ledger being closed."""

    sequence: int
    close_time: int
    base_fee: int
    base_reserve: int


@dataclass(frozen=True, slots=True)
class AccountEntry:
    account_id: str
    balance: int
    seq_num: int
    num_sub_entries: int = 0
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
    last_modified: int = 0

    @property
    def key(self) -> Key:
        return trustline_key(self.account_id, self.asset)


Entry = AccountEntry | TrustlineEntry


def asset_string(asset: Asset) -> str:
    """SEP-11 canonical form ("native" or "CODE:ISSUER"), as CAP-67 events name assets."""
    return "native" if asset.is_native() else f"{asset.code}:{asset.issuer}"


def account_key(account_id: str) -> Key:
    return ("account", account_id)


def trustline_key(account_id: str, asset: Asset) -> Key:
    return ("trustline", account_id, asset_string(asset))


class LedgerState:
    """The committed entries after the last closed ledger."""

    def __init__(self) -> None:
        self._entries: dict[Key, Entry] = {}

    def get(self, key: Key) -> Entry | None:
        return self._entries.get(key)

    def _write(self, key: Key, entry: Entry | None) -> None:
        if entry is None:
            self._entries.pop(key, None)
        else:
            self._entries[key] = entry


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

    def child(self) -> EntryTxn:
        return EntryTxn(self, self.ledger_seq)

    def get(self, key: Key) -> Entry | None:
        if key in self._after:
            return self._after[key]
        return self._parent.get(key)

    def account(self, account_id: str) -> AccountEntry | None:
        return cast(AccountEntry | None, self.get(account_key(account_id)))

    def trustline(self, account_id: str, asset: Asset) -> TrustlineEntry | None:
        return cast(TrustlineEntry | None, self.get(trustline_key(account_id, asset)))

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

    def commit(self) -> None:
        for key, entry in self._after.items():
            self._parent._write(key, entry)
        self._before.clear()
        self._after.clear()

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


# --- XDR -------------------------------------------------------------------------------------

_THRESHOLDS = X.Thresholds(bytes([1, 0, 0, 0]))  # master weight 1, all thresholds 0
_NO_EXT = X.ExtensionPoint(0)


@lru_cache(maxsize=65536)
def account_id_xdr(account_id: str) -> X.AccountID:
    return Keypair.from_public_key(account_id).xdr_account_id()


@lru_cache(maxsize=1024)
def _trustline_asset_xdr(asset: Asset) -> X.TrustLineAsset:
    return asset.to_trust_line_asset_xdr_object()


def _account_ext(entry: AccountEntry) -> X.AccountEntryExt:
    if entry.seq_ledger is None:
        return X.AccountEntryExt(0)
    v3 = X.AccountEntryExtensionV3(
        ext=_NO_EXT, seq_ledger=X.Uint32(entry.seq_ledger), seq_time=X.TimePoint(X.Uint64(entry.seq_time))
    )
    v2 = X.AccountEntryExtensionV2(
        num_sponsored=X.Uint32(0),
        num_sponsoring=X.Uint32(0),
        signer_sponsoring_i_ds=[],
        ext=X.AccountEntryExtensionV2Ext(3, v3=v3),
    )
    v1 = X.AccountEntryExtensionV1(
        liabilities=X.Liabilities(buying=X.Int64(0), selling=X.Int64(0)),
        ext=X.AccountEntryExtensionV1Ext(2, v2=v2),
    )
    return X.AccountEntryExt(1, v1=v1)


def entry_xdr(entry: Entry) -> X.LedgerEntry:
    if isinstance(entry, AccountEntry):
        data = X.LedgerEntryData(
            X.LedgerEntryType.ACCOUNT,
            account=X.AccountEntry(
                account_id=account_id_xdr(entry.account_id),
                balance=X.Int64(entry.balance),
                seq_num=X.SequenceNumber(X.Int64(entry.seq_num)),
                num_sub_entries=X.Uint32(entry.num_sub_entries),
                inflation_dest=None,
                flags=X.Uint32(0),
                home_domain=X.String32(b""),
                thresholds=_THRESHOLDS,
                signers=[],
                ext=_account_ext(entry),
            ),
        )
    else:
        data = X.LedgerEntryData(
            X.LedgerEntryType.TRUSTLINE,
            trust_line=X.TrustLineEntry(
                account_id=account_id_xdr(entry.account_id),
                asset=_trustline_asset_xdr(entry.asset),
                balance=X.Int64(entry.balance),
                limit=X.Int64(entry.limit),
                flags=X.Uint32(entry.flags),
                ext=X.TrustLineEntryExt(0),
            ),
        )
    return X.LedgerEntry(last_modified_ledger_seq=X.Uint32(entry.last_modified), data=data, ext=X.LedgerEntryExt(0))


@lru_cache(maxsize=8192)  # a snapshot is usually recorded twice: UPDATED, then STATE
def encoded_entry(entry: Entry) -> Encoded:
    return Encoded.of(entry_xdr(entry))


def _key_xdr(key: Key) -> X.LedgerKey:
    if key[0] == "account":
        return X.LedgerKey(X.LedgerEntryType.ACCOUNT, account=X.LedgerKeyAccount(account_id_xdr(key[1])))
    code, issuer = key[2].split(":")
    return X.LedgerKey(
        X.LedgerEntryType.TRUSTLINE,
        trust_line=X.LedgerKeyTrustLine(
            account_id=account_id_xdr(key[1]), asset=_trustline_asset_xdr(Asset(code, issuer))
        ),
    )


_CHANGE_TYPES = {
    ChangeType.STATE: (X.LedgerEntryChangeType.LEDGER_ENTRY_STATE, "state"),
    ChangeType.UPDATED: (X.LedgerEntryChangeType.LEDGER_ENTRY_UPDATED, "updated"),
    ChangeType.CREATED: (X.LedgerEntryChangeType.LEDGER_ENTRY_CREATED, "created"),
}


def changes_xdr(changes: list[Change]) -> X.LedgerEntryChanges:
    out = []
    for change in changes:
        if change.type is ChangeType.REMOVED:
            out.append(X.LedgerEntryChange(X.LedgerEntryChangeType.LEDGER_ENTRY_REMOVED, removed=_key_xdr(change.key)))
        else:
            xdr_type, arm = _CHANGE_TYPES[change.type]
            out.append(X.LedgerEntryChange(xdr_type, **{arm: encoded_entry(change.entry)}))
    return X.LedgerEntryChanges(out)
