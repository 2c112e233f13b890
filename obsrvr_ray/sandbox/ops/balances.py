"""Debiting and crediting accounts and trustlines, with the reserve and limit rules every
value-moving operation shares. An asset's issuer has no trustline for it: the issuer sending
creates the asset and receiving it destroys it, so neither side touches an entry."""

from __future__ import annotations

import enum
from dataclasses import replace

from stellar_sdk import Asset

from obsrvr_ray.sandbox.state import AUTHORIZED_FLAG, INT64_MAX, AccountEntry, EntryTxn


class Refusal(enum.Enum):
    NO_ACCOUNT = "no account"
    NO_TRUST = "no trustline"
    NOT_AUTHORIZED = "not authorized"
    UNDERFUNDED = "underfunded"
    LINE_FULL = "line full"


def min_balance(account: AccountEntry, base_reserve: int, extra_sub_entries: int = 0) -> int:
    """Two base reserves for the account plus one per sub-entry (trustlines here)."""
    return (2 + account.num_sub_entries + extra_sub_entries) * base_reserve


def spendable_xlm(account: AccountEntry, base_reserve: int) -> int:
    return max(0, account.balance - min_balance(account, base_reserve))


def debit(txn: EntryTxn, account_id: str, asset: Asset, amount: int, base_reserve: int) -> Refusal | None:
    if asset.is_native():
        account = txn.account(account_id)
        if account is None:
            return Refusal.NO_ACCOUNT
        if amount > spendable_xlm(account, base_reserve):
            return Refusal.UNDERFUNDED
        txn.put(replace(account, balance=account.balance - amount))
        return None
    if account_id == asset.issuer:
        return None
    line = txn.trustline(account_id, asset)
    if line is None:
        return Refusal.NO_TRUST
    if not line.flags & AUTHORIZED_FLAG:
        return Refusal.NOT_AUTHORIZED
    if amount > line.balance:
        return Refusal.UNDERFUNDED
    txn.put(replace(line, balance=line.balance - amount))
    return None


def credit(txn: EntryTxn, account_id: str, asset: Asset, amount: int) -> Refusal | None:
    if asset.is_native():
        account = txn.account(account_id)
        if account is None:
            return Refusal.NO_ACCOUNT
        if account.balance > INT64_MAX - amount:
            return Refusal.LINE_FULL
        txn.put(replace(account, balance=account.balance + amount))
        return None
    if account_id == asset.issuer:
        return None
    line = txn.trustline(account_id, asset)
    if line is None:
        return Refusal.NO_TRUST
    if not line.flags & AUTHORIZED_FLAG:
        return Refusal.NOT_AUTHORIZED
    if line.balance > line.limit - amount:
        return Refusal.LINE_FULL
    txn.put(replace(line, balance=line.balance + amount))
    return None
